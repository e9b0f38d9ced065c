package workerproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestHeartbeatInterval(t *testing.T) {
	for _, tt := range []struct{ timeout, want time.Duration }{
		{0, 0},
		{time.Second, 200 * time.Millisecond},
		{5 * time.Second, time.Second},
		{10 * time.Second, time.Second},
		{time.Hour, time.Second},
	} {
		if got := HeartbeatInterval(tt.timeout); got != tt.want {
			t.Errorf("HeartbeatInterval(%s) = %s, want %s", tt.timeout, got, tt.want)
		}
	}
}

func TestFailedLine(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errors.New("tls-cert: no such file"), "failed tls-cert: no such file\n"},
		{errors.New("two\nlines\tand  spaces"), "failed two lines and spaces\n"},
	} {
		if got := FailedLine(tt.err); got != tt.want {
			t.Errorf("FailedLine(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// The control pipe carries a Spec then Control messages, which a worker
// decodes with one decoder; a worker that knows no Control reads them as
// nothing it needs.
func TestControlStream(t *testing.T) {
	var pipe bytes.Buffer
	if err := json.NewEncoder(&pipe).Encode(Spec{Slot: 2, Heartbeat: time.Second, Broker: true, Processes: 3}); err != nil {
		t.Fatal(err)
	}
	if err := WriteControl(&pipe, Control{Drain: true, DrainPeriod: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&pipe)
	var spec Spec
	if err := dec.Decode(&spec); err != nil || spec.Slot != 2 || spec.Processes != 3 {
		t.Fatalf("spec %+v, %v", spec, err)
	}
	var msg Control
	if err := dec.Decode(&msg); err != nil || !msg.Drain || msg.DrainPeriod != 5*time.Second {
		t.Fatalf("control %+v, %v", msg, err)
	}
}
