package wsext

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"
)

// memHub joins the Servers of one test process the way an engine joins
// processes: each Server gets a memEngine, and a publish through one is
// handed to the others that subscribe, synchronously and in order.
type memHub struct {
	mu      sync.Mutex
	engines []*memEngine
}

func (h *memHub) engine() *memEngine {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := &memEngine{hub: h, subs: make(map[string]bool)}
	h.engines = append(h.engines, e)
	return e
}

type memEngine struct {
	hub *memHub

	mu        sync.Mutex
	deliver   func(channel string, data []byte, isText bool)
	starts    int
	subs      map[string]bool
	calls     int // Subscribe and Unsubscribe calls
	published int
	failStart error
	failSub   error
	failPub   error
	slow      time.Duration // how long Subscribe and Unsubscribe take
}

func (e *memEngine) Start(deliver func(string, []byte, bool)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.starts++
	e.deliver = deliver
	return e.failStart
}

func (e *memEngine) Publish(channel string, data []byte, isText bool) error {
	e.mu.Lock()
	e.published++
	err := e.failPub
	e.mu.Unlock()
	if err != nil {
		return err
	}
	e.hub.mu.Lock()
	defer e.hub.mu.Unlock()
	for _, o := range e.hub.engines {
		if o == e {
			continue
		}
		o.mu.Lock()
		d, sub := o.deliver, o.subs[channel]
		o.mu.Unlock()
		if sub && d != nil {
			d(channel, data, isText)
		}
	}
	return nil
}

func (e *memEngine) Subscribe(channel string) error {
	time.Sleep(e.slow)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	if e.failSub != nil {
		return e.failSub
	}
	e.subs[channel] = true
	return nil
}

func (e *memEngine) Unsubscribe(channel string) error {
	time.Sleep(e.slow)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	delete(e.subs, channel)
	return nil
}

func (e *memEngine) Close() error { return nil }

func (e *memEngine) subscribed(channel string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subs[channel]
}

// pubsubSettings subscribes every connection to the channel named by the
// request's ?ch= (several may be given); a message from a client is
// published on the first one, to everyone when echo, else to the others.
func pubsubSettings(ctx *fasthttp.RequestCtx) Settings {
	var chans []string
	for _, v := range ctx.QueryArgs().PeekMulti("ch") {
		chans = append(chans, string(v))
	}
	echo := ctx.QueryArgs().Has("echo")
	return Settings{
		OnOpen: func(ws *Conn) {
			for _, ch := range chans {
				if err := ws.Server().Subscribe(ws, ch); err != nil {
					ws.CloseWithCode(CloseInternalError, err.Error())
				}
			}
		},
		OnMessage: func(ws *Conn, data []byte, isText bool) {
			var err error
			if echo {
				err = ws.Server().Publish(chans[0], data, isText)
			} else {
				err = ws.Publish(chans[0], data, isText)
			}
			if err != nil {
				ws.CloseWithCode(CloseInternalError, err.Error())
			}
		},
	}
}

// dialSub dials ts subscribed to channel and waits until the server lists
// the subscription.
func dialSub(t *testing.T, ts *testServer, query string, channel string) *websocket.Conn {
	t.Helper()
	before := ts.Subscribers(channel)
	c, _ := dial(t, ts.url()+"?"+query, nil)
	waitFor(t, "the subscription", 5*time.Second, func() bool { return ts.Subscribers(channel) > before })
	return c
}

func readMsg(t *testing.T, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(data)
}

func TestPubSubLocal(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ts := startServer(t, m.opts, pubsubSettings)
			a := dialSub(t, ts, "ch=room", "room")
			b := dialSub(t, ts, "ch=room&ch=other", "room")
			o := dialSub(t, ts, "ch=other", "other")

			if err := ts.Publish("room", []byte("to the room"), true); err != nil {
				t.Fatal(err)
			}
			if err := ts.Publish("other", []byte{0, 1, 2}, false); err != nil {
				t.Fatal(err)
			}
			if err := ts.Publish("nobody", []byte("lost"), true); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*websocket.Conn{a, b} {
				if typ, got := readMsg(t, c); typ != websocket.MessageText || got != "to the room" {
					t.Errorf("room subscriber got %v %q", typ, got)
				}
			}
			// o subscribes to other only: the room message never reaches it.
			for _, c := range []*websocket.Conn{b, o} {
				if typ, got := readMsg(t, c); typ != websocket.MessageBinary || got != "\x00\x01\x02" {
					t.Errorf("other subscriber got %v %q", typ, got)
				}
			}
		})
	}
}

func TestPubSubSenderEcho(t *testing.T) {
	tests := []struct {
		query    string
		selfGets bool
	}{
		{"ch=room", false},
		{"ch=room&echo", true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			ts := startServer(t, Options{}, pubsubSettings)
			sender := dialSub(t, ts, tt.query, "room")
			other := dialSub(t, ts, tt.query, "room")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			sender.Write(ctx, websocket.MessageText, []byte("first"))
			if _, got := readMsg(t, other); got != "first" {
				t.Fatalf("other got %q", got)
			}
			// A message from the other side orders the sender's stream: if
			// "first" came back to the sender, it is read before "second".
			other.Write(ctx, websocket.MessageText, []byte("second"))
			want := "second"
			if tt.selfGets {
				want = "first"
			}
			if _, got := readMsg(t, sender); got != want {
				t.Errorf("sender read %q first, want %q", got, want)
			}
		})
	}
}

func TestPubSubUnsubscribeAndClose(t *testing.T) {
	hub := &memHub{}
	eng := hub.engine()
	ts := startServer(t, Options{Engine: eng}, pubsubSettings)
	c := dialSub(t, ts, "ch=a&ch=b", "b")
	if !eng.subscribed("a") || !eng.subscribed("b") {
		t.Fatalf("engine subscriptions %v, want a and b", eng.subs)
	}

	// Unsubscribe from inside the server, as an application would.
	var conn *Conn
	ts.reg.each(func(x *Conn) { conn = x })
	if err := ts.Unsubscribe(conn, "a"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Unsubscribe(conn, "a"); err != nil {
		t.Fatalf("second Unsubscribe: %v", err)
	}
	if ts.Subscribers("a") != 0 || eng.subscribed("a") {
		t.Errorf("after Unsubscribe: %d local subscribers of a, engine subscribed %v", ts.Subscribers("a"), eng.subscribed("a"))
	}
	ts.Publish("a", []byte("not for you"), true)
	ts.Publish("b", []byte("for you"), true)
	if _, got := readMsg(t, c); got != "for you" {
		t.Errorf("got %q after unsubscribing from a", got)
	}

	// Closing the connection drops its last subscription, here and in the
	// engine.
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the subscription to end", 5*time.Second, func() bool {
		return ts.Subscribers("b") == 0 && !eng.subscribed("b")
	})
	if err := ts.Subscribe(conn, "c"); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe on a closed connection: %v, want ErrClosed", err)
	}
	if ts.Subscribers("c") != 0 {
		t.Error("a closed connection was subscribed")
	}
}

func TestPublishInvalidUTF8(t *testing.T) {
	ts := startServer(t, Options{}, pubsubSettings)
	c := dialSub(t, ts, "ch=x", "x")
	if err := ts.Publish("x", []byte{0xff, 0xfe}, true); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("Publish of invalid UTF-8 as text: %v, want ErrInvalidUTF8", err)
	}
	ts.Publish("x", []byte{0xff, 0xfe}, false)
	if typ, got := readMsg(t, c); typ != websocket.MessageBinary || got != "\xff\xfe" {
		t.Errorf("got %v %q, want the binary message only", typ, got)
	}
}

// Two Servers joined by an engine stand for two processes: a publish on
// either reaches the subscribers of both, once each, in order.
func TestPubSubEngine(t *testing.T) {
	hub := &memHub{}
	engA, engB := hub.engine(), hub.engine()
	a := startServer(t, Options{Engine: engA}, pubsubSettings)
	b := startServer(t, Options{Engine: engB}, pubsubSettings)
	subA := dialSub(t, a, "ch=news", "news")
	subB := dialSub(t, b, "ch=news", "news")
	pubB := dialSub(t, b, "ch=news", "news")

	const n = 500
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		if err := a.Publish("news", []byte("a"+strconv.Itoa(i)), true); err != nil {
			t.Fatal(err)
		}
		pubB.Write(ctx, websocket.MessageText, []byte("b"+strconv.Itoa(i)))
	}
	// Each subscriber sees each publisher's messages in order, exactly
	// once; pubB does not get its own.
	check := func(name string, c *websocket.Conn, publishers ...string) {
		next := make(map[string]int)
		for range n * len(publishers) {
			_, got := readMsg(t, c)
			p, num := got[:1], got[1:]
			if want := strconv.Itoa(next[p]); num != want || !slices.Contains(publishers, p) {
				t.Fatalf("%s: got %q, want %s%s", name, got, p, want)
			}
			next[p]++
		}
	}
	check("subA", subA, "a", "b")
	check("subB", subB, "a", "b")
	check("pubB", pubB, "a")
	if engA.starts != 1 || engB.starts != 1 {
		t.Errorf("engines started %d and %d times, want once each", engA.starts, engB.starts)
	}
}

func TestPubSubEngineErrors(t *testing.T) {
	boom := errors.New("boom")
	t.Run("start", func(t *testing.T) {
		eng := (&memHub{}).engine()
		eng.failStart = boom
		ts := startServer(t, Options{Engine: eng}, pubsubSettings)
		c, _ := dial(t, ts.url()+"?ch=x", nil)
		// The subscription fails in the engine and the handler closes.
		if code := closeCode(t, c); code != websocket.StatusInternalError {
			t.Errorf("close code %v, want 1011", code)
		}
		if err := ts.Publish("x", []byte("m"), true); !errors.Is(err, boom) {
			t.Errorf("Publish: %v, want the start error", err)
		}
		if eng.starts != 1 {
			t.Errorf("Start called %d times, want 1", eng.starts)
		}
	})
	t.Run("subscribe", func(t *testing.T) {
		eng := (&memHub{}).engine()
		eng.failSub = boom
		s := NewServer(Options{Engine: eng})
		c1, _ := pollPair(t, s, Settings{})
		c2, _ := pollPair(t, s, Settings{})
		if err := s.Subscribe(c1, "x"); !errors.Is(err, boom) {
			t.Errorf("Subscribe: %v, want the engine's error", err)
		}
		// The failed channel is retried by the next subscriber.
		eng.mu.Lock()
		eng.failSub = nil
		eng.mu.Unlock()
		if err := s.Subscribe(c2, "x"); err != nil || !eng.subscribed("x") {
			t.Errorf("second Subscribe: %v, engine subscribed %v", err, eng.subscribed("x"))
		}
	})
	t.Run("publish", func(t *testing.T) {
		eng := (&memHub{}).engine()
		eng.failPub = boom
		ts := startServer(t, Options{Engine: eng}, pubsubSettings)
		c := dialSub(t, ts, "ch=x", "x")
		if err := ts.Publish("x", []byte("local"), true); !errors.Is(err, boom) {
			t.Errorf("Publish: %v, want the engine's error", err)
		}
		if _, got := readMsg(t, c); got != "local" {
			t.Errorf("local subscriber got %q", got)
		}
	})
}

// Concurrent first and last subscribers of the same channels must leave the
// engine subscribed to exactly the channels that have subscribers. Each
// round, every connection subscribes to or leaves a channel at the same
// time as the others; then the engine is checked against the table.
func TestPubSubEngineConverges(t *testing.T) {
	eng := (&memHub{}).engine()
	eng.slow = 20 * time.Microsecond // widens the races between engine calls
	s := NewServer(Options{Engine: eng})
	const nconns, nchans, rounds = 6, 2, 200
	conns := make([]*Conn, nconns)
	for i := range conns {
		conns[i], _ = pollPair(t, s, Settings{})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for r := range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, c := range conns {
			ch, sub := fmt.Sprint("ch", rng.IntN(nchans)), rng.IntN(2) == 0
			wg.Go(func() {
				<-start
				if sub {
					s.Subscribe(c, ch)
				} else {
					s.Unsubscribe(c, ch)
				}
			})
		}
		close(start)
		wg.Wait()
		for k := range nchans {
			ch := fmt.Sprint("ch", k)
			if local, remote := s.Subscribers(ch) > 0, eng.subscribed(ch); local != remote {
				t.Fatalf("round %d, %s: local subscribers %v, engine subscribed %v", r, ch, local, remote)
			}
		}
	}
	for _, c := range conns {
		c.abort()
	}
	waitFor(t, "every subscription to end", 5*time.Second, func() bool {
		eng.mu.Lock()
		defer eng.mu.Unlock()
		return len(eng.subs) == 0
	})
}

// ExampleServer_Publish is a chat room across processes: each connection
// subscribes to the room, and each message goes to every other member.
// With an Engine in Options, the members may be in other processes.
func ExampleServer_Publish() {
	srv := NewServer(Options{}) // Options{Engine: ...} to span processes
	handler := func(ctx *fasthttp.RequestCtx) {
		srv.Upgrade(ctx, Settings{
			OnOpen: func(ws *Conn) { srv.Subscribe(ws, "lobby") },
			OnMessage: func(ws *Conn, data []byte, isText bool) {
				ws.Publish("lobby", data, isText) // everyone but ws
			},
		})
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &fasthttp.Server{Handler: handler}
	go hs.Serve(ln)
	defer hs.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	alice, _, _ := websocket.Dial(ctx, "ws://"+ln.Addr().String(), nil)
	defer alice.CloseNow()
	bob, _, _ := websocket.Dial(ctx, "ws://"+ln.Addr().String(), nil)
	defer bob.CloseNow()
	for srv.Subscribers("lobby") < 2 { // both subscribed: OnOpen ran
		time.Sleep(time.Millisecond)
	}
	alice.Write(ctx, websocket.MessageText, []byte("hi Bob"))
	_, msg, _ := bob.Read(ctx)
	fmt.Println(string(msg))
	// Output: hi Bob
}

// BenchmarkPublish publishes a 64-byte message to 1 000 subscribers of one
// channel per iteration: the frame is encoded once, and each subscriber
// costs a queue append.
func BenchmarkPublish(b *testing.B) {
	const subs = 1000
	s := NewServer(Options{MaxBackpressure: 64 << 20})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range subs {
		c, peer := pollPair(b, s, Settings{})
		if err := s.Subscribe(c, "bench"); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := peer.Read(buf); err != nil {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		s.Publish("bench", msg, false)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
	close(stop)
	s.reg.each(func(c *Conn) { c.abort() })
}
