package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testLogger keeps the tests' output quiet unless -v.
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// socketPath returns a path for a relay socket; unix socket paths are
// short, so it is not under t.TempDir.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wsdc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pubsub.sock")
}

func listen(t *testing.T, path string, opts Options) *Hub {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	h, err := Listen(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// worker is an Engine with the messages it delivered.
type worker struct {
	*Engine
	in *inbox
}

func dialWorker(t *testing.T, path string) *worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := Dial(ctx, path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	w := &worker{Engine: e, in: &inbox{}}
	e.Start(w.in.deliver)
	return w
}

type msg struct {
	channel, data string
	text          bool
}

// inbox records delivered messages.
type inbox struct {
	mu   sync.Mutex
	msgs []msg
}

func (in *inbox) deliver(channel string, data []byte, isText bool) {
	in.mu.Lock()
	in.msgs = append(in.msgs, msg{channel, string(data), isText})
	in.mu.Unlock()
}

func (in *inbox) all() []msg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]msg(nil), in.msgs...)
}

func (in *inbox) has(data string) bool {
	for _, m := range in.all() {
		if m.data == data {
			return true
		}
	}
	return false
}

// subscribers is how many workers the Hub has subscribed to channel.
func (h *Hub) subscribers(channel string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs[channel])
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRelay(t *testing.T) {
	path := socketPath(t)
	h := listen(t, path, Options{})
	a, b, c := dialWorker(t, path), dialWorker(t, path), dialWorker(t, path)
	a.Subscribe("x")
	b.Subscribe("x")
	b.Subscribe("x") // idempotent
	c.Subscribe("y")
	eventually(t, "the subscriptions", func() bool { return h.subscribers("x") == 2 && h.subscribers("y") == 1 })

	if err := a.Publish("x", []byte("from a"), true); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("x", []byte{1, 2}, false); err != nil {
		t.Fatal(err)
	}
	a.Publish("y", []byte("for c"), true)
	a.Publish("z", []byte("for nobody"), true)
	eventually(t, "the messages", func() bool { return len(b.in.all()) == 2 && len(c.in.all()) == 1 })

	// Two publishers: no order between them.
	if got := b.in.all(); !slices.Contains(got, msg{"x", "from a", true}) || !slices.Contains(got, msg{"x", "\x01\x02", false}) {
		t.Errorf("b got %+v", got)
	}
	if got := c.in.all(); got[0] != (msg{"y", "for c", true}) {
		t.Errorf("c got %+v", got)
	}
	// a's own publish never comes back to it; c's does reach it.
	eventually(t, "c's message at a", func() bool { return a.in.has("\x01\x02") })
	if a.in.has("from a") {
		t.Error("a's own message was delivered back to it")
	}

	b.Unsubscribe("x")
	eventually(t, "the unsubscription", func() bool { return h.subscribers("x") == 1 })
	a.Publish("x", []byte("after"), true)
	c.Publish("x", []byte("after c"), true)
	eventually(t, "c's second message at a", func() bool { return a.in.has("after c") })
	if len(b.in.all()) != 2 {
		t.Errorf("b got %+v after unsubscribing", b.in.all())
	}

	// A worker that goes away takes its subscriptions with it.
	c.Close()
	eventually(t, "c's subscriptions to go", func() bool { return h.subscribers("y") == 0 })
	if err := c.Publish("x", []byte("closed"), true); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Publish after Close: %v, want ErrDisconnected", err)
	}
}

// Every message of one publisher arrives, in order.
func TestRelayOrder(t *testing.T) {
	path := socketPath(t)
	h := listen(t, path, Options{})
	pub, sub1, sub2 := dialWorker(t, path), dialWorker(t, path), dialWorker(t, path)
	sub1.Subscribe("o")
	sub2.Subscribe("o")
	eventually(t, "the subscriptions", func() bool { return h.subscribers("o") == 2 })
	const n = 20000
	for i := range n {
		if err := pub.Publish("o", []byte(strconv.Itoa(i)), true); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for _, w := range []*worker{sub1, sub2} {
		eventually(t, "every message", func() bool { return len(w.in.all()) == n })
		for i, m := range w.in.all() {
			if m.data != strconv.Itoa(i) {
				t.Fatalf("message %d is %q", i, m.data)
			}
		}
	}
}

// A worker that reads nothing loses messages, and holds up nobody.
func TestRelaySlowWorker(t *testing.T) {
	path := socketPath(t)
	h := listen(t, path, Options{MaxQueue: 64 << 10})
	pub, sub := dialWorker(t, path), dialWorker(t, path)
	sub.Subscribe("s")

	stuck, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.Write(appendSub(nil, opSubscribe, "s"))
	eventually(t, "the subscriptions", func() bool { return h.subscribers("s") == 2 })

	payload := make([]byte, 1024)
	const n = 8192 // 8 MiB: more than the stuck socket's buffers and queue
	for i := range n {
		copy(payload, strconv.Itoa(i)+";")
		if err := pub.Publish("s", payload, false); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if i%16 == 15 {
			// Keep sub's own queue short: this is about the stuck one.
			eventually(t, "sub to catch up", func() bool { return len(sub.in.all()) == i+1 })
		}
	}
	if h.Dropped() == 0 {
		t.Error("nothing was dropped for a worker that reads nothing")
	}
	for i, m := range sub.in.all() {
		if want := strconv.Itoa(i) + ";"; m.data[:len(want)] != want {
			t.Fatalf("sub's message %d starts %q", i, m.data[:8])
		}
	}
}

// A Hub that goes away and comes back (a master that re-executed itself)
// gets every worker's subscriptions again; meanwhile publishes fail.
func TestReconnect(t *testing.T) {
	path := socketPath(t)
	h := listen(t, path, Options{})
	a, b := dialWorker(t, path), dialWorker(t, path)
	a.Subscribe("r")
	b.Subscribe("r")
	b.Subscribe("gone")
	b.Unsubscribe("gone")
	eventually(t, "the subscriptions", func() bool { return h.subscribers("r") == 2 })
	h.Close()
	eventually(t, "a to notice", func() bool {
		return errors.Is(a.Publish("r", []byte("lost"), true), ErrDisconnected)
	})

	h2 := listen(t, path, Options{})
	eventually(t, "the resubscriptions", func() bool { return h2.subscribers("r") == 2 })
	if h2.subscribers("gone") != 0 {
		t.Error("an ended subscription came back")
	}
	eventually(t, "a publish to go through", func() bool { return a.Publish("r", []byte("back"), true) == nil })
	eventually(t, "b to get it", func() bool { return b.in.has("back") })
}

// Dial waits for a Hub that is still being set up, and gives up with ctx.
func TestDial(t *testing.T) {
	path := socketPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, path, Options{Logger: testLogger(t)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial with nothing listening: %v, want a deadline error", err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		h, err := Listen(path, Options{Logger: testLogger(t)})
		if err == nil {
			t.Cleanup(func() { h.Close() })
		}
	}()
	w := dialWorker(t, path)
	if err := w.Publish("d", []byte("m"), true); err != nil {
		t.Errorf("Publish after Dial: %v", err)
	}
}

// A peer that sends garbage is disconnected; the others carry on.
func TestMalformedPeer(t *testing.T) {
	path := socketPath(t)
	h := listen(t, path, Options{})
	a, b := dialWorker(t, path), dialWorker(t, path)
	b.Subscribe("m")
	eventually(t, "the subscription", func() bool { return h.subscribers("m") == 1 })

	bad, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write(appendSub(nil, opSubscribe, "m"))
	bad.Write([]byte{0, 0, 0, 1, '?'})
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(bad).ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the Hub kept a peer that sent garbage: read %v", err)
	}
	eventually(t, "the bad peer's subscription to go", func() bool { return h.subscribers("m") == 1 })
	a.Publish("m", []byte("still here"), true)
	eventually(t, "b to get the message", func() bool { return b.in.has("still here") })
}

func TestTooLarge(t *testing.T) {
	path := socketPath(t)
	listen(t, path, Options{})
	w := dialWorker(t, path)
	if err := w.Publish("big", make([]byte, MaxMessage+1), false); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Publish over MaxMessage: %v", err)
	}
	long := fmt.Sprintf("%0*d", MaxChannel+1, 0)
	if err := w.Subscribe(long); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Subscribe over MaxChannel: %v", err)
	}
}

// socketPair returns the two ends of a connected unix stream socketpair,
// the kind wsd's master hands out, as net.Conns.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// attachedWorker is an Engine whose every connection is a fresh socketpair
// attached to h, as wsd's workers get from their master.
type attachedWorker struct {
	*worker
	mu    sync.Mutex
	conns []net.Conn // the Hub's ends, latest last
}

func attachWorker(t *testing.T, h *Hub) *attachedWorker {
	t.Helper()
	w := &attachedWorker{}
	connect := func(ctx context.Context) (net.Conn, error) {
		mine, theirs := socketPair(t)
		if err := h.Attach(theirs); err != nil {
			mine.Close()
			return nil, err
		}
		w.mu.Lock()
		w.conns = append(w.conns, theirs)
		w.mu.Unlock()
		return mine, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := NewEngine(ctx, connect, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	w.worker = &worker{Engine: e, in: &inbox{}}
	e.Start(w.in.deliver)
	return w
}

func (w *attachedWorker) connections() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.conns)
}

// warnings records the log lines at Warn and above.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.lines = append(w.lines, r.Message)
	w.mu.Unlock()
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines)
}

// A Hub that listens on nothing relays between Engines on socketpairs.
func TestAttach(t *testing.T) {
	h := NewHub(Options{Logger: testLogger(t)})
	t.Cleanup(func() { h.Close() })
	if h.Addr() != nil {
		t.Errorf("Addr of a Hub that listens on nothing: %v", h.Addr())
	}
	a, b := attachWorker(t, h), attachWorker(t, h)
	a.Subscribe("p")
	b.Subscribe("p")
	eventually(t, "the subscriptions", func() bool { return h.subscribers("p") == 2 })
	a.Publish("p", []byte("to b"), true)
	b.Publish("p", []byte("to a"), false)
	eventually(t, "the messages", func() bool { return a.in.has("to a") && b.in.has("to b") })

	h.Close()
	if err := h.Attach(&net.UnixConn{}); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Attach after Close: %v, want ErrHubClosed", err)
	}
}

// A worker that dies, with messages for it unread, is dropped cleanly: its
// subscriptions go, nothing is logged above debug, and the other workers
// and a replacement carry on.
func TestAttachWorkerDies(t *testing.T) {
	warn := &warnings{}
	h := NewHub(Options{Logger: slog.New(warn)})
	t.Cleanup(func() { h.Close() })
	pub := attachWorker(t, h)
	sub := attachWorker(t, h)
	sub.Subscribe("d")

	// The dying worker subscribes and then reads nothing, so that it dies
	// with bytes unread: its end of the socketpair is reset, not closed.
	dying, hubEnd := socketPair(t)
	if err := h.Attach(hubEnd); err != nil {
		t.Fatal(err)
	}
	dying.Write(appendSub(nil, opSubscribe, "d"))
	eventually(t, "the subscriptions", func() bool { return h.subscribers("d") == 2 })
	pub.Publish("d", []byte("unread"), true)
	eventually(t, "the message to reach sub", func() bool { return sub.in.has("unread") })
	dying.Close()
	eventually(t, "the dead worker's subscription to go", func() bool { return h.subscribers("d") == 1 })

	replacement := attachWorker(t, h)
	replacement.Subscribe("d")
	eventually(t, "the replacement's subscription", func() bool { return h.subscribers("d") == 2 })
	pub.Publish("d", []byte("after"), true)
	eventually(t, "both to get the next message", func() bool { return sub.in.has("after") && replacement.in.has("after") })
	if w := warn.all(); len(w) > 0 {
		t.Errorf("warnings logged for a worker that died: %q", w)
	}
}

// When the Hub's end goes away (a master that re-executed itself), the
// Engine asks its connect function for a new connection and subscribes
// again on it.
func TestAttachReconnect(t *testing.T) {
	h := NewHub(Options{Logger: testLogger(t)})
	t.Cleanup(func() { h.Close() })
	a, b := attachWorker(t, h), attachWorker(t, h)
	a.Subscribe("r")
	eventually(t, "the subscription", func() bool { return h.subscribers("r") == 1 })
	a.mu.Lock()
	a.conns[0].Close()
	a.mu.Unlock()
	eventually(t, "a second connection", func() bool { return a.connections() == 2 })
	eventually(t, "the resubscription", func() bool { return h.subscribers("r") == 1 })
	eventually(t, "a publish to go through", func() bool {
		return b.Publish("r", []byte("again"), true) == nil && a.in.has("again")
	})
}
