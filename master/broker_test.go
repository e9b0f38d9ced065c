package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/admin"
	"github.com/wsd-server/wsd/internal/ratelog"
	"github.com/wsd-server/wsd/pubsub/cluster"
)

// testBroker returns both ends of a broker socket as the master and a worker
// hold them.
func testBroker(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	mine, theirs, err := brokerPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mine.Close() })
	fd, err := unix.Dup(int(theirs.Fd()))
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	worker, err := fdConn(fd, "worker-broker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { worker.Close() })
	return mine, worker
}

// A descriptor sent on the broker arrives as a working connection to the
// other end of its socketpair; a closed broker reads as end of file.
func TestBrokerSendFD(t *testing.T) {
	b, w := testBroker(t)
	local, fd, err := streamPair()
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if err := sendFD(b, opMetrics, fd); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if err := sendFD(b, opRelay, -1); err != nil {
		t.Fatal(err)
	}

	op, got, err := recvFD(w)
	if err != nil || op != opMetrics || got < 0 {
		t.Fatalf("recvFD = %q, %d, %v; want 'M' with a descriptor", op, got, err)
	}
	if flags, err := unix.FcntlInt(uintptr(got), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received descriptor flags %#x (%v), want close-on-exec", flags, err)
	}
	remote, err := fdConn(got, "remote")
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	go local.Write([]byte("over the pair"))
	buf := make([]byte, 32)
	remote.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := remote.Read(buf)
	if err != nil || string(buf[:n]) != "over the pair" {
		t.Errorf("read %q, %v through the handed-over socket", buf[:n], err)
	}

	if op, got, err := recvFD(w); err != nil || op != opRelay || got != -1 {
		t.Errorf("recvFD = %q, %d, %v; want 'R' without a descriptor", op, got, err)
	}
	if _, _, err := b.WriteMsgUnix([]byte("RR"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := recvFD(w); err == nil {
		t.Error("a message of two bytes was accepted")
	}
	b.Close()
	if _, _, err := recvFD(w); !errors.Is(err, io.EOF) {
		t.Errorf("recvFD after the other end closed: %v, want io.EOF", err)
	}
}

// Two workers reach the hub through their broker sockets, and relay to each
// other; each gets metrics requests on its own.
func TestBrokerRelayAndMetrics(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	m := &master{log: log, limit: ratelog.New(log, 0), relay: cluster.NewHub(cluster.Options{Logger: log})}
	t.Cleanup(func() { m.relay.Close() })

	type side struct {
		broker *workerBroker
		engine *cluster.Engine
		got    chan string
	}
	var sides []side
	for i := range 2 {
		b, w := testBroker(t)
		go m.serveBroker(&proc{pid: 100 + i}, b)
		brk := newWorkerBroker(w)
		t.Cleanup(brk.close)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := cluster.NewEngine(ctx, brk.dialRelay, cluster.Options{Logger: log})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		got := make(chan string, 16)
		e.Start(func(_ string, data []byte, _ bool) { got <- string(data) })
		e.Subscribe("c")
		sides = append(sides, side{brk, e, got})

		// Metrics over the same broker socket.
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_side", Help: "Side."}))
		ep := admin.NewEndpoint(reg)
		t.Cleanup(func() { ep.Close() })
		brk.metrics.Store(ep)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return metricsDialer(b)(ctx) },
			DisableKeepAlives: true,
		}}
		resp, err := client.Get("http://worker/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "test_side 0") {
			t.Errorf("metrics of side %d: %s", i, body)
		}
	}

	deadline := time.After(10 * time.Second)
	for {
		// Until the Hub has seen the subscription, a publish reaches no one.
		sides[0].engine.Publish("c", []byte("hello"), true)
		select {
		case msg := <-sides[1].got:
			if msg != "hello" {
				t.Fatalf("got %q", msg)
			}
			return
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("no message relayed between the two brokers' engines")
		}
	}
}

// A worker whose master does not answer gives up after relayReplyTimeout
// rather than hanging, and a dead master's broker fails at once.
func TestBrokerNoAnswer(t *testing.T) {
	b, w := testBroker(t)
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

func TestHeartbeatInterval(t *testing.T) {
	for _, tt := range []struct{ timeout, want time.Duration }{
		{0, 0},
		{time.Second, 200 * time.Millisecond},
		{5 * time.Second, time.Second},
		{10 * time.Second, time.Second},
		{time.Hour, time.Second},
	} {
		if got := heartbeatInterval(tt.timeout); got != tt.want {
			t.Errorf("heartbeatInterval(%s) = %s, want %s", tt.timeout, got, tt.want)
		}
	}
}

// readNow finds heartbeats that arrived while the deadline was expiring.
func TestReadNow(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	buf := make([]byte, 8)
	if readNow(r, buf) {
		t.Error("readNow on an empty pipe read something")
	}
	w.Write([]byte{heartbeatByte})
	r.SetReadDeadline(time.Now().Add(-time.Second))
	if !readNow(r, buf) {
		t.Error("readNow missed a heartbeat behind an expired deadline")
	}
}
