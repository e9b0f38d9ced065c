package worker

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Drain closes every WebSocket with 1012, spread over the period rather
// than all at once, refuses new connections from the start, and returns
// once they are all closed.
func TestDrainSpreadsCloses(t *testing.T) {
	const n = 40
	const period = 2 * time.Second
	w, err := New(testConfig(), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- w.Serve(ln) }()
	url := "ws://" + ln.Addr().String() + "/"

	type closed struct {
		at   time.Time
		code websocket.StatusCode
	}
	closes := make(chan closed, n)
	for range n {
		c, _ := wsDial(t, url, nil)
		// An echo proves the connection open, past the instant at which
		// an upgrade under way would get Shutdown's 1001 instead.
		writeMsg(t, c, websocket.MessageText, []byte("hi"))
		readMsg(t, c)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					closes <- closed{time.Now(), websocket.CloseStatus(err)}
					return
				}
			}
		}()
	}
	waitUntil(t, "every connection open", 10*time.Second, func() bool { return w.WebSocket().Count() == n })

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), period+10*time.Second)
	defer cancel()
	if err := w.Drain(ctx, period); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	took := time.Since(start)
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	var offsets []time.Duration
	for range n {
		select {
		case c := <-closes:
			if c.code != websocket.StatusServiceRestart {
				t.Errorf("close code %d, want 1012", c.code)
			}
			offsets = append(offsets, c.at.Sub(start))
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d connections were closed", len(offsets), n)
		}
	}
	slices.Sort(offsets)
	t.Logf("Drain took %s; closes from %s to %s", took, offsets[0], offsets[n-1])
	// The last of n closes is due at period*(n-1)/n; all at once would put
	// them within milliseconds of each other. The margins allow a loaded
	// machine.
	if spread := offsets[n-1] - offsets[0]; spread < period/2 {
		t.Errorf("closes spread over %s, want about %s", spread, period)
	}
	if took < period/2 {
		t.Errorf("Drain returned after %s, before the period %s was half over", took, period)
	}
	// A quarter of the connections at most in any 200ms, where an even
	// spread puts n/10.
	for i := range offsets {
		j := i
		for j < n && offsets[j]-offsets[i] < 200*time.Millisecond {
			j++
		}
		if j-i > n/4 {
			t.Fatalf("%d closes within 200ms from %s, want at most %d", j-i, offsets[i], n/4)
		}
	}
}

// A period of zero closes every connection at once, still with 1012.
func TestDrainZeroPeriod(t *testing.T) {
	s := serve(t, testConfig())
	c, _ := wsDial(t, s.url("ws", "/"), nil)
	writeMsg(t, c, websocket.MessageText, []byte("hi"))
	readMsg(t, c)
	code := make(chan websocket.StatusCode, 1)
	go func() { code <- closeStatus(t, c) }() // answers the close, so Drain need not wait
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WebSocket().Drain(ctx, 0, int(websocket.StatusServiceRestart)); err != nil {
		t.Fatal(err)
	}
	if got := <-code; got != websocket.StatusServiceRestart {
		t.Errorf("close code %d, want 1012", got)
	}
}
