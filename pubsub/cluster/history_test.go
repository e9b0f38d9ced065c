package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pmsg is a positioned message, as StartHistory's deliver gets it.
type pmsg struct {
	channel string
	offset  uint64
	epoch   string
	origin  uint64
	data    string
	text    bool
}

// pinbox records positioned messages.
type pinbox struct {
	mu   sync.Mutex
	msgs []pmsg
}

func (in *pinbox) deliver(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool) {
	in.mu.Lock()
	in.msgs = append(in.msgs, pmsg{channel, offset, epoch, origin, string(data), isText})
	in.mu.Unlock()
}

func (in *pinbox) all() []pmsg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

func (in *pinbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)
}

// historyWorker is an attached worker whose positioned messages go to hist.
type historyWorker struct {
	*attachedWorker
	hist *pinbox
}

func newHistoryWorker(t *testing.T, h *Hub) *historyWorker {
	t.Helper()
	w := &historyWorker{attachWorker(t, h), &pinbox{}}
	w.StartHistory(w.hist.deliver)
	return w
}

func historyHub(t *testing.T, opts Options) *Hub {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	h := NewHub(opts)
	t.Cleanup(func() { h.Close() })
	return h
}

// answer is what History returned, and gave fn.
type answer struct {
	top       uint64
	epoch     string
	recovered bool
	offsets   []uint64
	data      []string
}

func readHistory(t *testing.T, e *Engine, channel string, offset uint64, epoch string) answer {
	t.Helper()
	var a answer
	var err error
	a.top, a.epoch, a.recovered, err = e.History(channel, offset, epoch, func(offset uint64, data []byte, isText bool) {
		a.offsets = append(a.offsets, offset)
		a.data = append(a.data, string(data))
	})
	if err != nil {
		t.Fatalf("History(%q, %d, %q): %v", channel, offset, epoch, err)
	}
	return a
}

// Publishes with history are numbered by the Hub and reach every
// subscriber, the publisher included, in order; History serves what was
// missed, or says it cannot.
func TestPublishHistory(t *testing.T) {
	h := historyHub(t, Options{HistorySize: 10})
	a, b := newHistoryWorker(t, h), newHistoryWorker(t, h)
	a.Subscribe("h")
	b.Subscribe("h")
	eventually(t, "the subscriptions", func() bool { return h.subscribers("h") == 2 })

	var epoch string
	for i := range 3 {
		off, ep, err := a.PublishHistory("h", []byte("m"+strconv.Itoa(i+1)), i != 1, uint64(100+i))
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i+1) || ep == "" || (epoch != "" && ep != epoch) {
			t.Fatalf("publish %d: offset %d epoch %q (first epoch %q)", i, off, ep, epoch)
		}
		epoch = ep
	}
	for _, w := range []*historyWorker{a, b} {
		eventually(t, "the positioned messages", func() bool { return w.hist.len() == 3 })
	}
	for i := range 3 {
		want := pmsg{"h", uint64(i + 1), epoch, uint64(100 + i), "m" + strconv.Itoa(i+1), i != 1}
		if got := a.hist.all()[i]; got != want {
			t.Errorf("a's message %d: %+v, want %+v", i, got, want)
		}
		want.origin = 0
		if got := b.hist.all()[i]; got != want {
			t.Errorf("b's message %d: %+v, want %+v", i, got, want)
		}
	}
	// The plain deliver function gets none of them.
	if len(a.in.all())+len(b.in.all()) > 0 {
		t.Errorf("positioned messages reached Start's deliver: %+v %+v", a.in.all(), b.in.all())
	}

	tests := []struct {
		name      string
		channel   string
		offset    uint64
		epoch     string
		recovered bool
		offsets   []uint64
		top       uint64
		topEpoch  string
	}{
		{"after 1", "h", 1, epoch, true, []uint64{2, 3}, 3, epoch},
		{"at the top", "h", 3, epoch, true, nil, 3, epoch},
		{"everything", "h", 0, "", true, []uint64{1, 2, 3}, 3, epoch},
		{"wrong epoch", "h", 1, "not-" + epoch, false, nil, 3, epoch},
		{"above the top", "h", 4, epoch, false, nil, 3, epoch},
		{"no such channel", "none", 0, "", true, nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readHistory(t, b.Engine, tt.channel, tt.offset, tt.epoch)
			if got.recovered != tt.recovered || !slices.Equal(got.offsets, tt.offsets) || got.top != tt.top || got.epoch != tt.topEpoch {
				t.Errorf("History: %+v, want recovered %v, offsets %v, top %d %q", got, tt.recovered, tt.offsets, tt.top, tt.topEpoch)
			}
		})
	}
	if got := readHistory(t, a.Engine, "h", 1, epoch); !slices.Equal(got.data, []string{"m2", "m3"}) {
		t.Errorf("History's data: %q", got.data)
	}
}

// A history shorter than what a subscriber missed recovers nothing.
func TestHistoryTooOld(t *testing.T) {
	h := historyHub(t, Options{HistorySize: 2})
	w := newHistoryWorker(t, h)
	var epoch string
	for i := range 5 {
		_, ep, err := w.PublishHistory("old", []byte(strconv.Itoa(i)), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		epoch = ep
	}
	tests := []struct {
		name      string
		offset    uint64
		epoch     string
		recovered bool
		offsets   []uint64
	}{
		{"after 1", 1, epoch, false, nil},
		{"after 2", 2, epoch, false, nil},
		{"after 3", 3, epoch, true, []uint64{4, 5}},
		{"everything, of which 1 is gone", 0, "", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readHistory(t, w.Engine, "old", tt.offset, tt.epoch)
			if got.recovered != tt.recovered || !slices.Equal(got.offsets, tt.offsets) || got.top != 5 || got.epoch != epoch {
				t.Errorf("History: %+v, want recovered %v, offsets %v, top 5 %q", got, tt.recovered, tt.offsets, epoch)
			}
		})
	}
}

// A Hub that keeps no history numbers nothing and recovers only from the
// start, with nothing.
func TestNoHistory(t *testing.T) {
	h := historyHub(t, Options{})
	a, b := newHistoryWorker(t, h), newHistoryWorker(t, h)
	b.Subscribe("n")
	eventually(t, "the subscription", func() bool { return h.subscribers("n") == 1 })
	off, ep, err := a.PublishHistory("n", []byte("m"), true, 7)
	if err != nil || off != 0 || ep != "" {
		t.Fatalf("PublishHistory: %d %q %v, want 0 \"\" nil", off, ep, err)
	}
	eventually(t, "the message", func() bool { return b.hist.len() == 1 })
	if got := b.hist.all()[0]; got != (pmsg{"n", 0, "", 0, "m", true}) {
		t.Errorf("b got %+v", got)
	}
	tests := []struct {
		offset    uint64
		epoch     string
		recovered bool
	}{{0, "", true}, {1, "", false}, {0, "e", false}}
	for _, tt := range tests {
		if got := readHistory(t, b.Engine, "n", tt.offset, tt.epoch); got.recovered != tt.recovered || got.top != 0 || got.epoch != "" || got.offsets != nil {
			t.Errorf("History(%d, %q): %+v, want recovered %v at (0, \"\")", tt.offset, tt.epoch, got, tt.recovered)
		}
	}
}

// The recovery guarantee: a subscriber that asks for the history while a
// publisher goes on gets every message, in the answer or delivered.
func TestHistoryGapless(t *testing.T) {
	const n = 1000
	h := historyHub(t, Options{HistorySize: 2 * n})
	pub := newHistoryWorker(t, h)
	subs := []*historyWorker{newHistoryWorker(t, h), newHistoryWorker(t, h)}

	var published atomic.Uint64
	epoch := make(chan string, 1)
	errs := make(chan error, 1)
	go func() {
		for i := range n {
			off, ep, err := pub.PublishHistory("g", []byte(strconv.Itoa(i+1)), true, 0)
			if err != nil {
				errs <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			if i == 0 {
				epoch <- ep
			}
			published.Store(off)
		}
		errs <- nil
	}()
	ep := <-epoch
	eventually(t, "the publisher to be under way", func() bool { return published.Load() >= n/5 })

	// One subscriber comes for everything, the other back from offset 100.
	from := []uint64{0, 100}
	answers := make([]answer, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() {
			s.Subscribe("g")
			e := ""
			if from[i] > 0 {
				e = ep
			}
			var err error
			a := &answers[i]
			a.top, a.epoch, a.recovered, err = s.History("g", from[i], e, func(offset uint64, data []byte, isText bool) {
				a.offsets = append(a.offsets, offset)
			})
			if err != nil {
				t.Errorf("History: %v", err)
			}
		})
	}
	wg.Wait()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	for i, s := range subs {
		a := answers[i]
		if !a.recovered || a.epoch != ep {
			t.Fatalf("subscriber %d: History %+v, want recovered in %q", i, a, ep)
		}
		eventually(t, "the last message", func() bool {
			m := s.hist.all()
			return len(m) > 0 && m[len(m)-1].offset == n
		})
		seen := make(map[uint64]bool)
		for _, off := range a.offsets {
			seen[off] = true
		}
		var last uint64
		delivered := s.hist.all()
		for _, m := range delivered {
			if m.offset <= last {
				t.Fatalf("subscriber %d: offset %d delivered after %d", i, m.offset, last)
			}
			last = m.offset
			seen[m.offset] = true
		}
		for off := from[i] + 1; off <= n; off++ {
			if !seen[off] {
				t.Fatalf("subscriber %d: offset %d neither in History's answer (%d messages, top %d) nor delivered (%d, from %d)",
					i, off, len(a.offsets), a.top, len(delivered), delivered[0].offset)
			}
		}
		t.Logf("subscriber %d: %d in the answer (top %d), %d delivered from %d", i, len(a.offsets), a.top, len(delivered), delivered[0].offset)
	}
}

// An answer larger than MaxQueue goes through whole, one frame per message.
func TestHistoryLargeAnswer(t *testing.T) {
	h := historyHub(t, Options{HistorySize: 100, MaxQueue: 64 << 10})
	w := newHistoryWorker(t, h)
	msg := make([]byte, 16<<10)
	for i := range 100 {
		msg[0] = byte(i)
		if _, _, err := w.PublishHistory("big", msg, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	got := readHistory(t, w.Engine, "big", 0, "")
	if !got.recovered || len(got.offsets) != 100 || got.offsets[99] != 100 {
		t.Fatalf("History: recovered %v, %d messages", got.recovered, len(got.offsets))
	}
	for i, d := range got.data {
		if len(d) != len(msg) || d[0] != byte(i) {
			t.Fatalf("message %d: %d bytes starting %d", i, len(d), d[0])
		}
	}
}

// presence returns e's answer for channel, or fails the test.
func presence(t *testing.T, e *Engine, channel string) map[string]string {
	t.Helper()
	p, err := e.Presence(channel)
	if err != nil {
		t.Fatalf("Presence(%q): %v", channel, err)
	}
	return p
}

func eventuallyPresent(t *testing.T, e *Engine, channel string, want map[string]string) {
	t.Helper()
	eventually(t, fmt.Sprintf("presence in %q to be %v", channel, want), func() bool {
		got, err := e.Presence(channel) // fails while reconnecting
		return err == nil && maps.Equal(got, want)
	})
}

// Presence is every worker's listings, and goes with a worker that goes.
func TestPresence(t *testing.T) {
	h := historyHub(t, Options{})
	a, b := newHistoryWorker(t, h), newHistoryWorker(t, h)
	if got := presence(t, a.Engine, "room"); len(got) != 0 {
		t.Errorf("presence of an empty channel: %v", got)
	}
	a.Join("room", "a1", `{"n":1}`)
	b.Join("room", "b1", `{}`)
	b.Join("room", "b2", "")
	b.Join("hall", "b1", `{}`)
	want := map[string]string{"a1": `{"n":1}`, "b1": `{}`, "b2": ""}
	eventuallyPresent(t, a.Engine, "room", want)
	// Each worker's own joins are in its own answers at once: the join
	// went first on the same connection.
	a.Join("room", "a1", `{"n":2}`)
	want["a1"] = `{"n":2}`
	if got := presence(t, a.Engine, "room"); !maps.Equal(got, want) {
		t.Errorf("after a second join: %v, want %v", got, want)
	}
	b.Leave("room", "b2")
	b.Leave("room", "nobody")
	b.Leave("nowhere", "b1")
	delete(want, "b2")
	eventuallyPresent(t, a.Engine, "room", want)
	eventuallyPresent(t, a.Engine, "hall", map[string]string{"b1": `{}`})

	// b dies: its listings go.
	b.Close()
	eventuallyPresent(t, a.Engine, "room", map[string]string{"a1": `{"n":2}`})
	eventuallyPresent(t, a.Engine, "hall", map[string]string{})
	if err := b.Join("room", "b3", ""); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Join after Close: %v", err)
	}
}

// A worker killed with its listings (a raw connection that just ends)
// takes them with it; a client listed again by another worker stays.
func TestPresenceWorkerDies(t *testing.T) {
	h := historyHub(t, Options{})
	a := newHistoryWorker(t, h)
	dying, hubEnd := socketPair(t)
	if err := h.Attach(hubEnd); err != nil {
		t.Fatal(err)
	}
	dying.Write(appendJoin(appendJoin(nil, "d", "x1", "1"), "d", "moved", "old"))
	eventuallyPresent(t, a.Engine, "d", map[string]string{"x1": "1", "moved": "old"})
	a.Join("d", "moved", "new") // the client came back through a
	eventuallyPresent(t, a.Engine, "d", map[string]string{"x1": "1", "moved": "new"})
	dying.Close()
	eventuallyPresent(t, a.Engine, "d", map[string]string{"moved": "new"})
}

// A worker whose connection breaks lists its entries again on the next.
func TestPresenceRejoin(t *testing.T) {
	h := historyHub(t, Options{})
	a, b := newHistoryWorker(t, h), newHistoryWorker(t, h)
	a.Join("r", "a1", "i")
	a.Join("r", "gone", "i")
	a.Leave("r", "gone")
	eventuallyPresent(t, b.Engine, "r", map[string]string{"a1": "i"})
	a.mu.Lock()
	a.conns[0].Close()
	a.mu.Unlock()
	eventually(t, "a second connection", func() bool { return a.connections() == 2 })
	eventuallyPresent(t, b.Engine, "r", map[string]string{"a1": "i"})
}

// A worker over the presence bound has its further joins dropped, and
// logged.
func TestPresenceBound(t *testing.T) {
	// Restored after the Hub, made below, is closed: cleanups run last
	// first.
	n := maxPeerJoins
	t.Cleanup(func() { maxPeerJoins = n })
	maxPeerJoins = 2
	warn := &warnings{}
	h := historyHub(t, Options{Logger: slog.New(warn)})
	a := newHistoryWorker(t, h)
	for _, c := range []string{"c1", "c2", "c3"} {
		a.Join("b", c, "")
	}
	a.Join("b", "c2", "again") // a listing already held is replaced
	if got, want := presence(t, a.Engine, "b"), map[string]string{"c1": "", "c2": "again"}; !maps.Equal(got, want) {
		t.Errorf("presence: %v, want %v", got, want)
	}
	if len(warn.all()) != 1 {
		t.Errorf("warnings: %q", warn.all())
	}
	a.Leave("b", "c1")
	a.Join("b", "c3", "")
	if got, want := presence(t, a.Engine, "b"), map[string]string{"c2": "again", "c3": ""}; !maps.Equal(got, want) {
		t.Errorf("presence after a leave: %v, want %v", got, want)
	}
}

// A new Hub (a master that re-executed itself) has new epochs: an old
// position is not recovered. The workers' listings are back on it.
func TestHistoryNewHub(t *testing.T) {
	path := socketPath(t)
	h := listen(t, path, Options{HistorySize: 10})
	w := dialWorker(t, path)
	w.Join("n", "c", "i")
	off, ep, err := w.PublishHistory("n", []byte("m"), true, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	eventually(t, "the worker to notice", func() bool {
		_, _, err := w.PublishHistory("n", []byte("lost"), true, 0)
		return errors.Is(err, ErrDisconnected)
	})

	listen(t, path, Options{HistorySize: 10})
	eventuallyPresent(t, w.Engine, "n", map[string]string{"c": "i"})
	var ep2 string
	eventually(t, "a publish to go through", func() bool {
		_, ep2, err = w.PublishHistory("n", []byte("new"), true, 0)
		return err == nil
	})
	if ep2 == ep {
		t.Errorf("the new Hub uses the old epoch %q", ep)
	}
	if got := readHistory(t, w.Engine, "n", off, ep); got.recovered || got.epoch != ep2 || got.top != 1 {
		t.Errorf("History from the old Hub's position: %+v, want not recovered at (1, %q)", got, ep2)
	}
}

// fakeHub is the Hub's end of an Engine's connections that reads the
// requests and answers none.
type fakeHub struct {
	requests chan byte     // the op of every frame read
	conns    chan net.Conn // the Hub's ends, as they connect
}

func newFakeHub(t *testing.T, timeout time.Duration) (*fakeHub, *Engine) {
	t.Helper()
	f := &fakeHub{requests: make(chan byte, 100), conns: make(chan net.Conn, 100)}
	connect := func(ctx context.Context) (net.Conn, error) {
		mine, theirs := socketPair(t)
		f.conns <- theirs
		go func() {
			br := bufio.NewReader(theirs)
			for {
				_, fr, err := readFrame(br, nil)
				if err != nil {
					return
				}
				f.requests <- fr.op
			}
		}()
		return mine, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := NewEngine(ctx, connect, Options{Logger: testLogger(t), RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return f, e
}

// Requests that get no answer give up: with ErrTimeout, or with
// ErrDisconnected when the connection breaks; with no connection, at once.
func TestRequestFailures(t *testing.T) {
	requests := []struct {
		name string
		op   byte
		call func(e *Engine) error
	}{
		{"PublishHistory", opPublishHistory, func(e *Engine) error {
			_, _, err := e.PublishHistory("c", []byte("m"), true, 1)
			return err
		}},
		{"History", opHistoryRequest, func(e *Engine) error {
			_, _, _, err := e.History("c", 0, "", func(uint64, []byte, bool) { t.Error("fn called") })
			return err
		}},
		{"Presence", opPresenceRequest, func(e *Engine) error {
			_, err := e.Presence("c")
			return err
		}},
	}
	for _, r := range requests {
		t.Run(r.name+" timeout", func(t *testing.T) {
			_, e := newFakeHub(t, 50*time.Millisecond)
			if err := r.call(e); !errors.Is(err, ErrTimeout) {
				t.Errorf("err %v, want ErrTimeout", err)
			}
		})
		t.Run(r.name+" broken connection", func(t *testing.T) {
			f, e := newFakeHub(t, time.Minute)
			first := <-f.conns
			done := make(chan error, 1)
			go func() { done <- r.call(e) }()
			if op := <-f.requests; op != r.op {
				t.Fatalf("the hub read %q, want %q", op, r.op)
			}
			first.Close()
			select {
			case err := <-done:
				if !errors.Is(err, ErrDisconnected) {
					t.Errorf("err %v, want ErrDisconnected", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the request still waits after its connection broke")
			}
		})
		t.Run(r.name+" hub gone", func(t *testing.T) {
			path := socketPath(t)
			h := listen(t, path, Options{})
			w := dialWorker(t, path)
			h.Close()
			// The Engine learns of it when it reads the end of its
			// connection; from then on, requests fail at once.
			eventually(t, "the request to fail with ErrDisconnected", func() bool {
				start := time.Now()
				err := r.call(w.Engine)
				if time.Since(start) > time.Second {
					t.Errorf("a request took %v to fail (%v)", time.Since(start), err)
				}
				return errors.Is(err, ErrDisconnected)
			})
		})
	}
}
