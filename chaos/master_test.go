//go:build chaos

package chaos

import (
	"context"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestMasterKilled: SIGKILL of the master of 2 workers, while 4 idle
// WebSockets are open on them. The workers watch the master through a pipe
// and must stop on their own (closing their WebSockets) within the
// shutdown timeout; nothing of the daemon may be left: no process, no
// /tmp/wsd-<master pid>. Then a new daemon on the same port must start and
// serve the probe.
func TestMasterKilled(t *testing.T) {
	r := newReport(t)
	d := startDaemon(t, daemonOpts{processes: 2})
	workers := d.initial
	_, err := os.Stat(d.runtimeDir())
	t.Logf("runtime directory %s: %v", d.runtimeDir(), errOrOK(err))

	// Some traffic first, then the probe stops: it has no business across
	// a kill.
	p := startProbe(t, d, probeOpts{})
	if _, ok := eventually(10*time.Second, func() bool { return p.echoes.Load() >= 30 }); !ok {
		t.Errorf("the probe made %d round trips in 10 s", p.echoes.Load())
	}
	p.check(r)

	idle := openIdle(t, d.addr, 4)
	t.Logf("in the file system before the kill: %v", d.noteFiles())
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL to the master: %v", err)
	}
	<-d.exited
	took, ok := eventually(15*time.Second, func() bool {
		for _, w := range workers {
			if alive(w) {
				return false
			}
		}
		return true
	})
	if ok {
		r.notef("the workers %v exited %s after the master was killed", workers, took.Round(time.Millisecond))
	} else {
		t.Errorf("15 s after SIGKILL of the master, its workers still run: %s", describe(workers))
	}
	codes := idle.wait(5 * time.Second)
	r.notef("the idle WebSockets ended with %v", codes)
	for i, c := range codes {
		if c == "open" {
			t.Errorf("idle WebSocket %d is still open after its worker should have gone", i)
		}
	}
	d.checkNothingLeft(5 * time.Second)

	// A new daemon on the same port.
	start := time.Now()
	d2 := startDaemon(t, daemonOpts{processes: 2, port: d.port})
	r.notef("a new daemon served on the same port %s after its start", time.Since(start).Round(time.Millisecond))
	s := &scene{t: t, d: d2, r: r, p: startProbe(t, d2, probeOpts{})}
	s.baseline()
	if _, ok := eventually(10*time.Second, func() bool { return s.p.echoes.Load() >= 30 }); !ok {
		t.Errorf("the probe made %d round trips in 10 s on the new daemon", s.p.echoes.Load())
	}
	s.endAttack(0)
	s.finish(true)
}

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "exists"
}

// idleConns are WebSockets that only read, to see how they end.
type idleConns struct {
	mu    sync.Mutex
	codes []string // "open" until the connection ends, then how it ended
	wg    sync.WaitGroup
}

// openIdle opens n WebSockets on / that send nothing.
func openIdle(t *testing.T, addr string, n int) *idleConns {
	t.Helper()
	ic := &idleConns{codes: make([]string, n)}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		})
		cancel()
		if err != nil {
			t.Fatalf("idle WebSocket: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		ic.codes[i] = "open"
		ic.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _, err := c.Read(ctx)
			how := "no close frame: " + errKind(err)
			if code := websocket.CloseStatus(err); code != -1 {
				how = code.String()
			}
			ic.mu.Lock()
			ic.codes[i] = how
			ic.mu.Unlock()
		})
	}
	return ic
}

// wait waits at most timeout for the connections to end and returns how
// each one ended ("open" if it did not).
func (ic *idleConns) wait(timeout time.Duration) []string {
	done := make(chan struct{})
	go func() {
		ic.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return append([]string(nil), ic.codes...)
}
