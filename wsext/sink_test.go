package wsext

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// funcRecorder is a SubscribeFunc function that keeps what it gets.
type funcRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *funcRecorder) fn(data []byte, isText bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prefix := "b:"
	if isText {
		prefix = "t:"
	}
	r.msgs = append(r.msgs, prefix+string(data))
}

func (r *funcRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// TestSubscribeFunc: a Subscription gets the messages of its channel from
// Server.Publish, from a connection's Publish and through the engine from
// another process, in order; it keeps the engine subscribed while it is
// the channel's only subscriber, and Unsubscribe ends both.
func TestSubscribeFunc(t *testing.T) {
	hub := &memHub{}
	engA, engB := hub.engine(), hub.engine()
	a := startServer(t, Options{Engine: engA}, pubsubSettings)
	b := startServer(t, Options{Engine: engB}, pubsubSettings)

	var rec, other funcRecorder
	sub, err := a.SubscribeFunc("news", rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	subOther, err := a.SubscribeFunc("other", other.fn)
	if err != nil {
		t.Fatal(err)
	}
	if !engA.subscribed("news") {
		t.Fatal("the engine does not subscribe to a channel whose only subscriber is a Subscription")
	}
	if n := a.FuncSubscribers("news"); n != 1 {
		t.Errorf("FuncSubscribers = %d, want 1", n)
	}
	// A WebSocket publisher on a, one on b, and b's Server.Publish.
	pubA := dialSub(t, a, "ch=news", "news")
	pubB := dialSub(t, b, "ch=news", "news")
	const n = 50
	for i := range n {
		if err := b.Publish("news", []byte("s"+strconv.Itoa(i)), true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		writeText(t, pubA, "a"+strconv.Itoa(i))
		writeText(t, pubB, "b"+strconv.Itoa(i))
	}
	if err := a.Publish("news", []byte{0, 1}, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every message", 10*time.Second, func() bool { return len(rec.got()) == 3*n+1 })
	// Each publisher's messages in order; the binary one anywhere, as
	// publishers are not ordered among themselves.
	next := map[string]int{}
	binary := 0
	for _, m := range rec.got() {
		if m == "b:\x00\x01" {
			binary++
			continue
		}
		p, num := m[:3], m[3:]
		if want := strconv.Itoa(next[p]); num != want {
			t.Fatalf("got %q after %d messages of %q, out of order", m, next[p], p)
		}
		next[p]++
	}
	if binary != 1 {
		t.Errorf("the binary message came %d times, want once", binary)
	}
	if len(other.got()) != 0 {
		t.Errorf("a subscription to another channel got %q", other.got())
	}

	// The connections go; the Subscription alone keeps the engine.
	pubA.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the connection's unsubscription", 5*time.Second, func() bool { return a.Subscribers("news") == 0 })
	if !engA.subscribed("news") {
		t.Fatal("the engine unsubscribed with a Subscription left")
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatalf("second Unsubscribe: %v", err)
	}
	if engA.subscribed("news") {
		t.Error("the engine still subscribes after the last Subscription went")
	}
	before := len(rec.got())
	a.Publish("news", []byte("late"), true)
	if len(rec.got()) != before {
		t.Error("an unsubscribed function was called")
	}
	subOther.Unsubscribe()
}

// TestSubscribeFuncPanicAndEngineError: a panicking function costs its one
// call, and an engine that cannot subscribe is reported with a Subscription
// that still gets this process's messages.
func TestSubscribeFuncPanicAndEngineError(t *testing.T) {
	eng := (&memHub{}).engine()
	eng.failSub = errors.New("boom")
	s := NewServer(Options{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	calls := 0
	sub, err := s.SubscribeFunc("x", func([]byte, bool) { calls++; panic("oops") })
	if err == nil || sub == nil {
		t.Fatalf("SubscribeFunc = %v, %v; want a Subscription and the engine's error", sub, err)
	}
	s.Publish("x", []byte("1"), true)
	s.Publish("x", []byte("2"), true)
	if calls != 2 {
		t.Errorf("%d calls, want 2", calls)
	}
	if p := s.Stats().Panics; p != 2 {
		t.Errorf("Stats.Panics = %d, want 2", p)
	}
	sub.Unsubscribe()
}

func writeText(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		t.Fatal(err)
	}
}
