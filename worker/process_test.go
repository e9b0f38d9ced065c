package worker

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/internal/workerproto"
)

// testBrokerPair returns both ends of a broker socket: the master's and the
// worker's.
func testBrokerPair(t *testing.T) (master, worker *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if master, err = workerproto.FDConn(fds[0], "master"); err != nil {
		t.Fatal(err)
	}
	if worker, err = workerproto.FDConn(fds[1], "worker"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close(); worker.Close() })
	return master, worker
}

// A worker whose master does not answer gives up after relayReplyTimeout
// rather than hanging, and a dead master's broker fails at once.
func TestBrokerNoAnswer(t *testing.T) {
	b, w := testBrokerPair(t)
	brk := newWorkerBroker(w)
	t.Cleanup(brk.close)
	start := time.Now()
	if _, err := brk.dialRelay(context.Background()); err == nil {
		t.Fatal("dialRelay succeeded with nobody answering")
	}
	if d := time.Since(start); d < relayReplyTimeout/2 || d > relayReplyTimeout+5*time.Second {
		t.Errorf("dialRelay gave up after %s, want about %s", d, relayReplyTimeout)
	}
	b.Close()
	<-brk.done
	if _, err := brk.dialRelay(context.Background()); err == nil {
		t.Error("dialRelay succeeded with the master's end closed")
	}
}

// A relay request is answered with a connection, which dialRelay returns.
func TestBrokerDialRelay(t *testing.T) {
	b, w := testBrokerPair(t)
	brk := newWorkerBroker(w)
	t.Cleanup(brk.close)
	go func() {
		op, _, err := workerproto.RecvFD(b)
		if err != nil || op != workerproto.OpRelay {
			return
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return
		}
		workerproto.SendFD(b, workerproto.OpRelay, fds[1])
		unix.Close(fds[1])
		f := os.NewFile(uintptr(fds[0]), "hub")
		f.Write([]byte("hub"))
		f.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := brk.dialRelay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 8)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hub" {
		t.Errorf("read %q, %v from the relay connection", buf[:n], err)
	}
}

// readControl hands over drain messages and reports the end of the pipe.
func TestReadControl(t *testing.T) {
	for _, tt := range []struct {
		name  string
		input string
		drain bool
	}{
		{"end of pipe", "", false},
		{"drain", `{"Drain":true,"DrainPeriod":2000000000}` + "\n", true},
		{"unknown message", `{"Reopen":true}` + "\n", false},
		{"garbage", "not json", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := strings.NewReader(tt.input)
			drains := make(chan workerproto.Control, 1)
			gone := make(chan struct{})
			go readControl(json.NewDecoder(r), r, drains, func() { close(gone) })
			select {
			case <-gone:
			case <-time.After(10 * time.Second):
				t.Fatal("readControl did not see the end of the pipe")
			}
			select {
			case msg := <-drains:
				if !tt.drain || msg.DrainPeriod != 2*time.Second {
					t.Errorf("drain %+v", msg)
				}
			default:
				if tt.drain {
					t.Error("no drain handed over")
				}
			}
		})
	}
}
