package master

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/wsd-server/wsd/internal/workerproto"
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
	worker, err := workerproto.FDConn(fd, "worker-broker")
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
	if err := workerproto.SendFD(b, workerproto.OpMetrics, fd); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if err := workerproto.SendFD(b, workerproto.OpRelay, -1); err != nil {
		t.Fatal(err)
	}

	op, got, err := workerproto.RecvFD(w)
	if err != nil || op != workerproto.OpMetrics || got < 0 {
		t.Fatalf("recvFD = %q, %d, %v; want 'M' with a descriptor", op, got, err)
	}
	if flags, err := unix.FcntlInt(uintptr(got), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received descriptor flags %#x (%v), want close-on-exec", flags, err)
	}
	remote, err := workerproto.FDConn(got, "remote")
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

	if op, got, err := workerproto.RecvFD(w); err != nil || op != workerproto.OpRelay || got != -1 {
		t.Errorf("recvFD = %q, %d, %v; want 'R' without a descriptor", op, got, err)
	}
	if _, _, err := b.WriteMsgUnix([]byte("RR"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := workerproto.RecvFD(w); err == nil {
		t.Error("a message of two bytes was accepted")
	}
	b.Close()
	if _, _, err := workerproto.RecvFD(w); !errors.Is(err, io.EOF) {
		t.Errorf("recvFD after the other end closed: %v, want io.EOF", err)
	}
}

// Two workers reach the hub through their broker sockets, each with a
// fresh connection per relay request, and relay to each other; each gets
// metrics requests on its own. The workers' side here is a bare stand-in:
// package worker tests its own.
func TestBrokerRelayAndMetrics(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	m := &master{log: log, limit: ratelog.New(log, 0), relay: cluster.NewHub(cluster.Options{Logger: log})}
	t.Cleanup(func() { m.relay.Close() })

	var engines []*cluster.Engine
	var inboxes []chan string
	for i := range 2 {
		b, w := testBroker(t)
		go m.serveBroker(&proc{pid: 100 + i}, b)
		// A worker's dial: ask, and take the connection that comes back.
		dial := func(context.Context) (net.Conn, error) {
			if err := workerproto.SendFD(w, workerproto.OpRelay, -1); err != nil {
				return nil, err
			}
			w.SetReadDeadline(time.Now().Add(10 * time.Second))
			op, fd, err := workerproto.RecvFD(w)
			if err != nil {
				return nil, err
			}
			if op != workerproto.OpRelay || fd < 0 {
				return nil, fmt.Errorf("answer %q with descriptor %d", op, fd)
			}
			return workerproto.FDConn(fd, "relay")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := cluster.NewEngine(ctx, dial, cluster.Options{Logger: log})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		got := make(chan string, 16)
		e.Start(func(_ string, data []byte, _ bool) { got <- string(data) })
		e.Subscribe("c")
		engines, inboxes = append(engines, e), append(inboxes, got)
	}

	// Metrics: the master's dialer hands the worker one end of a new
	// socketpair, on which the worker serves one HTTP request.
	b, w := testBroker(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_side", Help: "Side."}))
	ep := admin.NewEndpoint(reg)
	t.Cleanup(func() { ep.Close() })
	go func() {
		for {
			op, fd, err := workerproto.RecvFD(w)
			if err != nil {
				return
			}
			if c, err := workerproto.FDConn(fd, "scrape"); err == nil && op == workerproto.OpMetrics {
				ep.ServeConn(c)
			}
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return metricsDialer(b)(ctx) },
		DisableKeepAlives: true,
	}}
	for range 2 {
		resp, err := client.Get("http://worker/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "test_side 0") {
			t.Errorf("metrics: %s", body)
		}
	}

	deadline := time.After(10 * time.Second)
	for {
		// Until the Hub has seen the subscription, a publish reaches no one.
		engines[0].Publish("c", []byte("hello"), true)
		select {
		case msg := <-inboxes[1]:
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
	w.Write([]byte{workerproto.HeartbeatByte})
	r.SetReadDeadline(time.Now().Add(-time.Second))
	if !readNow(r, buf) {
		t.Error("readNow missed a heartbeat behind an expired deadline")
	}
}
