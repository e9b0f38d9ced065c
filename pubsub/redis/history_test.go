package redis

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsd-server/wsd/pubsub/internal/redistest"
	"github.com/wsd-server/wsd/wsext"
)

var (
	_ wsext.HistoryEngine  = (*Engine)(nil)
	_ wsext.PresenceEngine = (*Engine)(nil)
)

// pmsg is a message delivered with its position.
type pmsg struct {
	offset uint64
	epoch  string
	origin uint64
	data   string
	text   bool
}

// pinbox records positioned deliveries by channel.
type pinbox struct {
	mu  sync.Mutex
	by  map[string][]pmsg
	lag atomic.Bool // a slow consumer: the engine's deliveries fall behind Redis
}

func (in *pinbox) deliver(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool) {
	if in.lag.Load() {
		time.Sleep(300 * time.Microsecond)
	}
	in.mu.Lock()
	if in.by == nil {
		in.by = make(map[string][]pmsg)
	}
	in.by[channel] = append(in.by[channel], pmsg{offset, epoch, origin, string(data), isText})
	in.mu.Unlock()
}

func (in *pinbox) get(channel string) []pmsg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.by[channel])
}

type hengine struct {
	*Engine
	in    *pinbox
	plain *inbox // what Start's deliver gets
	logs  *syncBuffer
}

func startHistory(t *testing.T, opts Options) *hengine {
	t.Helper()
	// As wsext does: Start (in start), then StartHistory.
	base := start(t, opts)
	in := &pinbox{}
	if err := base.StartHistory(in.deliver); err != nil {
		t.Fatal(err)
	}
	if base.StartHistory(in.deliver) == nil || base.Start(base.in.deliver) == nil {
		t.Error("the engine started twice")
	}
	return &hengine{base.Engine, in, base.in, base.logs}
}

// subscribe subscribes e to channel and returns once Redis has made the
// subscription: History waits for that.
func subscribe(t *testing.T, e *hengine, channel string) {
	t.Helper()
	e.Subscribe(channel)
	if _, _, _, err := e.History(channel, math.MaxUint64, "", func(uint64, []byte, bool) {}); err != nil {
		t.Fatalf("History to wait for the subscription to %q: %v", channel, err)
	}
}

type hist struct {
	top       uint64
	epoch     string
	recovered bool
	offsets   []uint64
	data      []string
}

func history(t *testing.T, e *hengine, channel string, offset uint64, epoch string) hist {
	t.Helper()
	var h hist
	var err error
	h.top, h.epoch, h.recovered, err = e.History(channel, offset, epoch, func(o uint64, data []byte, isText bool) {
		h.offsets = append(h.offsets, o)
		h.data = append(h.data, string(data))
	})
	if err != nil {
		t.Fatalf("History(%q, %d, %q): %v", channel, offset, epoch, err)
	}
	if !h.recovered && len(h.offsets) > 0 {
		t.Errorf("History(%q, %d, %q) called fn %d times but did not recover", channel, offset, epoch, len(h.offsets))
	}
	return h
}

func publishN(t *testing.T, e *hengine, channel string, from, to int) (epoch string) {
	t.Helper()
	for i := from; i <= to; i++ {
		off, ep, err := e.PublishHistory(channel, []byte("m"+strconv.Itoa(i)), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i) || (epoch != "" && ep != epoch) {
			t.Fatalf("message %d published at (%d, %q), epoch so far %q", i, off, ep, epoch)
		}
		epoch = ep
	}
	return epoch
}

// Two engines ("hosts") publish on one channel: one sequence of offsets in
// one epoch, delivered in order to both, each message's origin to its
// publisher alone; a plain engine (Start) gets the data too.
func TestHistoryTwoEngines(t *testing.T) {
	r := redistest.Start(t)
	a := startHistory(t, Options{URL: r.URL(), HistorySize: 100})
	b := startHistory(t, Options{URL: r.URL(), HistorySize: 100})
	plain := start(t, Options{URL: r.URL()})
	if h := history(t, a, "room", 0, ""); h.top != 0 || h.epoch != "" || !h.recovered {
		t.Errorf("history of a channel never published: %+v, want top (0, \"\"), recovered", h)
	}
	subscribe(t, a, "room")
	subscribe(t, b, "room")
	plain.Subscribe("room")
	eventually(t, 10*time.Second, "the plain engine's subscription", func() bool {
		n, err := a.client.PubSubNumSub(context.Background(), "wsd:room").Result()
		return err == nil && n["wsd:room"] == 3
	})

	const n = 60
	var epoch string
	for i := 1; i <= n; i++ {
		pub, origin := a, uint64(1000+i)
		if i%3 == 0 {
			pub = b
		}
		off, ep, err := pub.PublishHistory("room", []byte("m"+strconv.Itoa(i)), i%2 == 0, origin)
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i) || (epoch != "" && ep != epoch) || ep == "" {
			t.Fatalf("publish %d: (%d, %q), want offset %d in epoch %q", i, off, ep, i, epoch)
		}
		epoch = ep
	}
	for _, e := range []*hengine{a, b} {
		eventually(t, 10*time.Second, "every message", func() bool { return len(e.in.get("room")) >= n })
	}
	for name, e := range map[string]*hengine{"a": a, "b": b} {
		got := e.in.get("room")
		if len(got) != n {
			t.Fatalf("%s got %d messages, want %d", name, len(got), n)
		}
		for i, m := range got {
			o := uint64(i + 1)
			mine := (e == b) == (i%3 == 2)
			want := pmsg{o, epoch, 0, "m" + strconv.Itoa(i+1), o%2 == 0}
			if mine {
				want.origin = 1000 + o
			}
			if m != want {
				t.Errorf("%s's message %d: %+v, want %+v", name, i, m, want)
			}
		}
	}
	eventually(t, 10*time.Second, "the plain engine to get every message", func() bool { return len(plain.in.all()) >= n })
	if got := plain.in.all(); len(got) != n || got[0].data != "m1" || got[n-1].data != "m"+strconv.Itoa(n) {
		t.Errorf("the plain engine got %d messages: %+v", len(got), got)
	}
	plain.Publish("room", []byte("plain"), true)
	eventually(t, 10*time.Second, "a plain message", func() bool { return a.plain.has("plain") && b.plain.has("plain") })
	for _, e := range []*hengine{a, b} {
		if got := e.plain.all(); len(got) != 1 {
			t.Errorf("Start's deliver got %+v, want the plain message alone", got)
		}
	}
	if h := history(t, b, "room", 0, ""); h.top != n || h.epoch != epoch || !h.recovered || len(h.data) != n || h.data[n-1] != "m"+strconv.Itoa(n) {
		t.Errorf("the whole history: %+v", h)
	}
}

// History's answers: after an offset, at the top, past what is kept, in
// the wrong epoch, from the zero position.
func TestHistoryQueries(t *testing.T) {
	r := redistest.Start(t)
	small := startHistory(t, Options{URL: r.URL(), HistorySize: 2})
	big := startHistory(t, Options{URL: r.URL(), HistorySize: 10})
	se := publishN(t, small, "small", 1, 4) // keeps 3 and 4
	be := publishN(t, big, "big", 1, 4)     // keeps all
	if se == be {
		t.Fatalf("two channels share the epoch %q", se)
	}
	for _, tc := range []struct {
		name      string
		channel   string
		offset    uint64
		epoch     string
		top       uint64
		topEpoch  string
		recovered bool
		offsets   []uint64
	}{
		{"after 2", "small", 2, se, 4, se, true, []uint64{3, 4}},
		{"after 3", "small", 3, se, 4, se, true, []uint64{4}},
		{"at the top", "small", 4, se, 4, se, true, nil},
		{"too old", "small", 1, se, 4, se, false, nil},
		{"zero, first gone", "small", 0, "", 4, se, false, nil},
		{"zero with the epoch, first gone", "small", 0, se, 4, se, false, nil},
		{"wrong epoch", "small", 3, "other", 4, se, false, nil},
		{"no epoch", "small", 3, "", 4, se, false, nil},
		{"above the top", "small", 5, se, 4, se, false, nil},
		{"top alone", "small", math.MaxUint64, "", 4, se, false, nil},
		{"zero, all kept", "big", 0, "", 4, be, true, []uint64{1, 2, 3, 4}},
		{"zero with the epoch, all kept", "big", 0, be, 4, be, true, []uint64{1, 2, 3, 4}},
		{"after 1, all kept", "big", 1, be, 4, be, true, []uint64{2, 3, 4}},
		{"another channel's epoch", "big", 1, se, 4, be, false, nil},
		{"no history, zero", "none", 0, "", 0, "", true, nil},
		{"no history, an epoch", "none", 0, se, 0, "", false, nil},
		{"no history, an offset", "none", 3, se, 0, "", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := history(t, small, tc.channel, tc.offset, tc.epoch)
			if h.top != tc.top || h.epoch != tc.topEpoch || h.recovered != tc.recovered || !slices.Equal(h.offsets, tc.offsets) {
				t.Errorf("got top (%d, %q), recovered %v, offsets %v; want (%d, %q), %v, %v",
					h.top, h.epoch, h.recovered, h.offsets, tc.top, tc.topEpoch, tc.recovered, tc.offsets)
			}
			for i, o := range h.offsets {
				if h.data[i] != "m"+strconv.FormatUint(o, 10) {
					t.Errorf("message at %d is %q", o, h.data[i])
				}
			}
		})
	}
}

// With no history, PublishHistory still delivers, at (0, ""), and History
// knows nothing.
func TestHistoryNone(t *testing.T) {
	r := redistest.Start(t)
	a := startHistory(t, Options{URL: r.URL()})
	b := startHistory(t, Options{URL: r.URL()})
	a.Subscribe("n")
	b.Subscribe("n")
	eventually(t, 10*time.Second, "both subscriptions", func() bool {
		n, err := a.client.PubSubNumSub(context.Background(), "wsd:n").Result()
		return err == nil && n["wsd:n"] == 2
	})
	off, ep, err := a.PublishHistory("n", []byte("x"), false, 5)
	if err != nil || off != 0 || ep != "" {
		t.Fatalf("PublishHistory without history: (%d, %q), %v; want (0, \"\")", off, ep, err)
	}
	eventually(t, 10*time.Second, "the message on both", func() bool { return len(a.in.get("n")) == 1 && len(b.in.get("n")) == 1 })
	if got, want := a.in.get("n")[0], (pmsg{0, "", 5, "x", false}); got != want {
		t.Errorf("a got %+v, want %+v", got, want)
	}
	if got, want := b.in.get("n")[0], (pmsg{0, "", 0, "x", false}); got != want {
		t.Errorf("b got %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		offset    uint64
		epoch     string
		recovered bool
	}{{0, "", true}, {0, "e", false}, {1, "", false}} {
		h := history(t, a, "n", tc.offset, tc.epoch)
		if h.top != 0 || h.epoch != "" || h.recovered != tc.recovered {
			t.Errorf("History(%d, %q) without history: %+v, want top (0, \"\"), recovered %v", tc.offset, tc.epoch, h, tc.recovered)
		}
	}
	if n, _ := a.client.Exists(context.Background(), "wsd:meta:n", "wsd:history:n").Result(); n != 0 {
		t.Errorf("%d history keys on Redis with HistorySize 0", n)
	}
}

// With a TTL, messages older than it leave the history while the channel
// goes on; a channel quiet for longer loses its history, and starts a new
// epoch.
func TestHistoryTTL(t *testing.T) {
	r := redistest.Start(t)
	const ttl = 500 * time.Millisecond
	a := startHistory(t, Options{URL: r.URL(), HistorySize: 1000, HistoryTTL: ttl})
	epoch := publishN(t, a, "t", 1, 3)
	if h := history(t, a, "t", 0, ""); !h.recovered || !slices.Equal(h.offsets, []uint64{1, 2, 3}) {
		t.Fatalf("fresh history: %+v", h)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer raw.Close()
	ctx := context.Background()
	if d, err := raw.PTTL(ctx, "wsd:history:t").Result(); err != nil || d <= 0 || d > ttl {
		t.Errorf("the stream's PTTL is %v (%v), want at most %v", d, err, ttl)
	}

	// Publishing every 50ms keeps the channel alive: its old messages age
	// out of History's answer (and of the stream), the newest stay.
	next := 4
	eventually(t, 10*time.Second, "message 1 to age out", func() bool {
		off, ep, err := a.PublishHistory("t", []byte("m"+strconv.Itoa(next)), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ep != epoch || off != uint64(next) {
			t.Fatalf("publish %d while the channel is alive: (%d, %q), want epoch %q", next, off, ep, epoch)
		}
		next++
		time.Sleep(50 * time.Millisecond) // the pace of the publisher, not a synchronisation
		return !history(t, a, "t", 0, "").recovered
	})
	// History skips aged messages at once; the stream loses them at the
	// next publish.
	top := uint64(next)
	if off, ep, err := a.PublishHistory("t", []byte("m"+strconv.Itoa(next)), true, 0); err != nil || off != top || ep != epoch {
		t.Fatalf("publish %d: (%d, %q), %v", next, off, ep, err)
	}
	if h := history(t, a, "t", top-1, epoch); !h.recovered || !slices.Equal(h.offsets, []uint64{top}) || h.top != top {
		t.Errorf("the newest message after aging: %+v", h)
	}
	if h := history(t, a, "t", 1, epoch); h.recovered || h.top != top || h.epoch != epoch {
		t.Errorf("after an aged-out message: %+v, want not recovered, top (%d, %q)", h, top, epoch)
	}
	if n, _ := raw.XLen(ctx, "wsd:history:t").Result(); n >= int64(top) {
		t.Errorf("the stream holds %d entries of %d: MINID did not trim", n, top)
	}

	// Quiet: the keys expire, the history is gone.
	eventually(t, 10*time.Second, "the quiet channel's history to go", func() bool {
		return history(t, a, "t", 0, "").top == 0
	})
	if h := history(t, a, "t", top, epoch); h.recovered || h.top != 0 || h.epoch != "" {
		t.Errorf("after the history went: %+v, want top (0, \"\"), not recovered", h)
	}
	off, ep, err := a.PublishHistory("t", []byte("again"), true, 0)
	if err != nil || off != 1 || ep == epoch || ep == "" {
		t.Errorf("first publish after the history went: (%d, %q), %v; want offset 1 in a new epoch", off, ep, err)
	}
}

// A lost meta key (evicted, deleted) starts a new epoch at offset 1; the
// stream of the old one goes.
func TestHistoryLostMeta(t *testing.T) {
	r := redistest.Start(t)
	a := startHistory(t, Options{URL: r.URL(), HistorySize: 10})
	old := publishN(t, a, "l", 1, 5)
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer raw.Close()
	ctx := context.Background()
	if err := raw.Del(ctx, "wsd:meta:l").Err(); err != nil {
		t.Fatal(err)
	}
	if h := history(t, a, "l", 3, old); h.recovered || h.top != 0 || h.epoch != "" {
		t.Errorf("History with the meta key gone: %+v, want top (0, \"\"), not recovered", h)
	}
	off, ep, err := a.PublishHistory("l", []byte("new"), true, 0)
	if err != nil || off != 1 || ep == old || ep == "" {
		t.Fatalf("publish after the meta key went: (%d, %q), %v; want offset 1 in a new epoch", off, ep, err)
	}
	if n, _ := raw.XLen(ctx, "wsd:history:l").Result(); n != 1 {
		t.Errorf("the stream holds %d entries, want the new epoch's 1", n)
	}
	if h := history(t, a, "l", 3, old); h.recovered || h.top != 1 || h.epoch != ep {
		t.Errorf("History in the old epoch: %+v, want not recovered, top (1, %q)", h, ep)
	}
	if h := history(t, a, "l", 0, ""); !h.recovered || !slices.Equal(h.data, []string{"new"}) {
		t.Errorf("the new epoch's history: %+v", h)
	}
}

// TestHistoryConsistency checks HistoryEngine's promise: once Subscribe
// has returned, every message is in History's answer or delivered after;
// and this engine's own: none up to History's top is delivered after it
// returns.
// A publisher sends 1000 messages; the subscriber subscribes and reads the
// history while it does, at several points. In the slow cases the
// subscriber's SUBSCRIBE is held back (by holding subSem, as a SUBSCRIBE
// slow to reach Redis would be) while 100 more messages are published, so
// that a History that read the stream before Redis made the subscription
// would miss them. In the lagging cases the subscriber's deliveries fall
// behind Redis, so that messages up to History's top are still on their
// way when it has read the stream.
func TestHistoryConsistency(t *testing.T) {
	r := redistest.Start(t)
	const n = 1000
	pub := startHistory(t, Options{URL: r.URL(), HistorySize: n})
	prompt := startHistory(t, Options{URL: r.URL(), HistorySize: n})
	lagging := startHistory(t, Options{URL: r.URL(), HistorySize: n})
	lagging.in.lag.Store(true)
	for _, tc := range []struct {
		after int
		slow  bool
		lag   bool
	}{
		{0, false, false}, {1, false, false}, {100, false, false}, {500, false, false}, {900, false, false},
		{0, true, false}, {300, true, false}, {850, true, false},
		{200, false, true}, {200, true, true},
	} {
		name := strconv.Itoa(tc.after)
		if tc.slow {
			name += "-slow"
		}
		sub := prompt
		if tc.lag {
			name += "-lagging"
			sub = lagging
		}
		t.Run(name, func(t *testing.T) {
			channel := "c" + name
			reached := make(chan struct{}) // message after+1 is being published
			further := make(chan struct{}) // 100 more were
			closeFurther := sync.OnceFunc(func() { close(further) })
			done := make(chan error, 1)
			go func() {
				defer closeFurther()
				for i := 1; i <= n; i++ {
					switch i {
					case tc.after + 1:
						close(reached)
					case tc.after + 101:
						closeFurther()
					}
					if _, _, err := pub.PublishHistory(channel, []byte(strconv.Itoa(i)), true, 0); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			if tc.after > 0 {
				<-reached
			}
			if tc.slow {
				sub.subSem <- struct{}{}
			}
			sub.Subscribe(channel)
			type answer struct {
				h      hist
				err    error
				before int // messages delivered when History returned
			}
			answered := make(chan answer, 1)
			go func() {
				var a answer
				a.h.top, a.h.epoch, a.h.recovered, a.err = sub.History(channel, 0, "", func(o uint64, _ []byte, _ bool) {
					a.h.offsets = append(a.h.offsets, o)
				})
				a.before = len(sub.in.get(channel))
				answered <- a
			}()
			if tc.slow {
				<-further
				<-sub.subSem
			}
			a := <-answered
			h := a.h
			if a.err != nil || !h.recovered {
				t.Fatalf("History(0, \"\") with every message kept: %+v, %v", h, a.err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			seen := make(map[uint64]bool)
			for _, o := range h.offsets {
				seen[o] = true
			}
			eventually(t, 10*time.Second, "the last message", func() bool {
				live := sub.in.get(channel)
				return seen[n] || len(live) > 0 && live[len(live)-1].offset == n
			})
			live := sub.in.get(channel)
			for i, m := range live {
				if i > 0 && m.offset != live[i-1].offset+1 {
					t.Fatalf("delivered %d after %d", m.offset, live[i-1].offset)
				}
				if m.data != strconv.FormatUint(m.offset, 10) {
					t.Fatalf("message %d is %q", m.offset, m.data)
				}
				if i >= a.before && m.offset <= h.top {
					t.Fatalf("message %d, in the history (top %d), delivered after History returned", m.offset, h.top)
				}
				seen[m.offset] = true
			}
			var first uint64
			if len(live) > 0 {
				first = live[0].offset
			}
			for o := uint64(1); o <= n; o++ {
				if !seen[o] {
					t.Fatalf("message %d is neither in the history (top %d) nor delivered (from %d)", o, h.top, first)
				}
			}
			t.Logf("history to %d, delivered from %d", h.top, first)
		})
	}
}

// Redis hung, then killed: PublishHistory, History and Presence fail
// within RequestTimeout, the log stays bounded; once Redis is back the
// subscriptions and presence entries are there again.
func TestHistoryRedisDown(t *testing.T) {
	r := redistest.Start(t)
	const timeout = time.Second
	opts := Options{URL: r.URL(), Timeout: timeout, RequestTimeout: timeout, HistorySize: 10, PresenceTTL: 3 * time.Second}
	a := startHistory(t, opts)
	b := startHistory(t, opts)
	subscribe(t, a, "d")
	subscribe(t, b, "d")
	a.Join("d", "a1", "info-a")
	eventually(t, 10*time.Second, "a's entry", func() bool {
		p, err := b.Presence("d")
		return err == nil && p["a1"] == "info-a"
	})

	calls := []struct {
		name string
		call func() error
	}{
		{"PublishHistory", func() error { _, _, err := a.PublishHistory("d", []byte("lost"), true, 0); return err }},
		{"History", func() error {
			_, _, _, err := a.History("d", 0, "", func(uint64, []byte, bool) {})
			return err
		}},
		{"Presence", func() error { _, err := a.Presence("d"); return err }},
		{"History, not subscribed", func() error {
			_, _, _, err := b.History("other", 0, "", func(uint64, []byte, bool) {})
			return err
		}},
	}
	check := func(t *testing.T) {
		for _, c := range calls {
			begin := time.Now()
			err := c.call()
			if d := time.Since(begin); d > timeout+time.Second {
				t.Errorf("%s took %s with Redis down, want at most RequestTimeout %s and a margin", c.name, d, timeout)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s with Redis down: %v, want ErrUnavailable", c.name, err)
			}
		}
	}

	t.Run("hung", func(t *testing.T) {
		r.Signal(syscall.SIGSTOP)
		defer r.Signal(syscall.SIGCONT)
		check(t)
	})
	eventually(t, 10*time.Second, "Redis to answer again", func() bool {
		_, _, err := a.PublishHistory("d", []byte("back"), true, 0)
		return err == nil
	})

	t.Run("killed", func(t *testing.T) {
		r.Kill()
		check(t)
		// Many calls for longer than the log's interval: some lines, but
		// at most one a second of each kind.
		before := len(a.logs.String())
		begin := time.Now()
		for time.Since(begin) < 1500*time.Millisecond {
			a.PublishHistory("d", []byte("lost"), true, 0)
			a.Join("d", "a1", "info-a")
			time.Sleep(time.Millisecond) // the pace of the calls, not a synchronisation
		}
		elapsed := time.Since(begin)
		logs := a.logs.String()[before:]
		for _, l := range []string{"publish to Redis failed", "writing presence to Redis failed"} {
			if lines := countLines(logs, l); lines == 0 {
				t.Errorf("no line %q", l)
			} else if bound := int(elapsed/time.Second) + 2; lines > bound {
				t.Errorf("%d lines %q in %s, want at most %d", lines, l, elapsed, bound)
			}
		}
	})

	r.Restart() // empty: a restarted Redis without persistence
	eventually(t, 10*time.Second, "b's subscription again", func() bool {
		_, _, _, err := b.History("d", math.MaxUint64, "", func(uint64, []byte, bool) {})
		return err == nil
	})
	var epoch string
	eventually(t, 10*time.Second, "a publish after the restart", func() bool {
		off, ep, err := a.PublishHistory("d", []byte("after"), true, 0)
		epoch = ep
		return err == nil && off == 1
	})
	eventually(t, 10*time.Second, "b to get it", func() bool {
		got := b.in.get("d")
		return len(got) > 0 && got[len(got)-1] == pmsg{1, epoch, 0, "after", true}
	})
	eventually(t, 10*time.Second, "a's entry again", func() bool {
		p, err := b.Presence("d")
		return err == nil && p["a1"] == "info-a"
	})
	if h := history(t, b, "d", 0, ""); !h.recovered || !slices.Equal(h.data, []string{"after"}) {
		t.Errorf("the history after the restart: %+v", h)
	}
}

func countLines(logs, substr string) int {
	n := 0
	for line := range strings.Lines(logs) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}
