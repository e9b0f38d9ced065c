package enginetest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsd-server/wsd/wsext"
)

// Harness makes the Servers a contract test runs on.
type Harness struct {
	// New returns n Servers that share one engine (for the in-process
	// engine, one Server n times), keeping historySize messages per channel
	// and publishing presence events (wsext.Options.PresenceEvents). It
	// stops them when t ends.
	New func(t *testing.T, n, historySize int) []*wsext.Server
	// Shared is true when the Servers are distinct processes' stand-ins
	// (they meet only through the engine).
	Shared bool
}

// wait bounds every wait of the suite: long, so that a loaded machine
// never fails a test that is right, and only a wrong one waits it out.
const wait = 15 * time.Second

// Run runs the contract tests against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Offsets", testOffsets},
		{"Recover", testRecover},
		{"RecoverFailures", testRecoverFailures},
		{"RecoverUnderLoad", testRecoverUnderLoad},
		{"RecoverTooMuch", testRecoverTooMuch},
		{"PublishWithoutWaiting", testPublishWithoutWaiting},
		{"TextAndBinary", testTextAndBinary},
		{"Presence", testPresence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

// message is one message as a subscriber got it.
type message struct {
	pos    wsext.Position
	data   string
	isText bool
}

// recorder is a SubscribeFuncWith subscriber that keeps what it gets.
type recorder struct {
	mu   sync.Mutex
	got  []message
	more chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) fn(pos wsext.Position, data []byte, isText bool) {
	r.mu.Lock()
	r.got = append(r.got, message{pos, string(data), isText})
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

func (r *recorder) messages() []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor waits until the recorder holds n messages (or more), and returns
// them.
func (r *recorder) waitFor(t *testing.T, n int) []message {
	t.Helper()
	deadline := time.After(wait)
	for {
		if got := r.messages(); len(got) >= n {
			return got
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("got %d messages in %v, want %d", len(r.messages()), wait, n)
		}
	}
}

func subscribe(t *testing.T, s *wsext.Server, channel string, since *wsext.Position) (*recorder, wsext.Recovery) {
	t.Helper()
	r := newRecorder()
	sub, rec, err := s.SubscribeFuncWith(channel, r.fn, wsext.SubscribeOptions{Since: since})
	if err != nil {
		t.Fatalf("SubscribeFuncWith(%q, since %v): %v", channel, since, err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return r, rec
}

func publish(t *testing.T, s *wsext.Server, channel, data string) wsext.Position {
	t.Helper()
	pos, err := s.PublishPosition(channel, []byte(data), true)
	if err != nil {
		t.Fatalf("PublishPosition(%q, %q): %v", channel, data, err)
	}
	return pos
}

// checkRun checks that msgs are the messages "m<from>".."m<to>" at offsets
// from..to of one epoch, each once, in order.
func checkRun(t *testing.T, msgs []message, from, to uint64, epoch string) {
	t.Helper()
	for i, m := range msgs {
		off := from + uint64(i)
		if m.pos.Offset != off || m.pos.Epoch != epoch || m.data != fmt.Sprintf("m%d", off) {
			t.Fatalf("message %d of %d is %+v, want offset %d epoch %q data m%d (the run is %d..%d)", i, len(msgs), m, off, epoch, off, from, to)
		}
	}
	if want := int(to - from + 1); len(msgs) != want {
		t.Fatalf("got %d messages, want %d (offsets %d..%d)", len(msgs), want, from, to)
	}
}

// testOffsets: offsets grow by one per channel under one epoch, whichever
// Server publishes, and every subscriber gets every message once, in
// order, with its position.
func testOffsets(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 100)
	const ch = "offsets"
	r0, rec0 := subscribe(t, srvs[0], ch, nil)
	r1, _ := subscribe(t, srvs[1], ch, nil)
	if !rec0.Recovered || rec0.Top != (wsext.Position{}) {
		t.Fatalf("a new channel's recovery is %+v, want recovered at the zero top", rec0)
	}
	var epoch string
	for i := 1; i <= 10; i++ {
		pos := publish(t, srvs[i%2], ch, fmt.Sprintf("m%d", i))
		if pos.Offset != uint64(i) || pos.Epoch == "" || (epoch != "" && pos.Epoch != epoch) {
			t.Fatalf("publish %d got position %+v (first epoch %q)", i, pos, epoch)
		}
		epoch = pos.Epoch
	}
	checkRun(t, r0.waitFor(t, 10), 1, 10, epoch)
	checkRun(t, r1.waitFor(t, 10), 1, 10, epoch)
	// Another channel has offsets of its own.
	if pos := publish(t, srvs[1], ch+"-other", "x"); pos.Offset != 1 {
		t.Fatalf("the first message of another channel is at %+v", pos)
	}
}

// testRecover: a subscriber coming back with a position gets what came
// after it, then the live messages, each once.
func testRecover(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 100)
	const ch = "recover"
	var top wsext.Position
	for i := 1; i <= 5; i++ {
		top = publish(t, srvs[0], ch, fmt.Sprintf("m%d", i))
	}
	r, rec := subscribe(t, srvs[1], ch, &wsext.Position{Offset: 2, Epoch: top.Epoch})
	if !rec.Recovered || rec.Replayed != 3 || rec.Top != top {
		t.Fatalf("recovery from 2 is %+v, want recovered, 3 replayed, top %+v", rec, top)
	}
	checkRun(t, r.waitFor(t, 3), 3, 5, top.Epoch)
	publish(t, srvs[0], ch, "m6")
	publish(t, srvs[1], ch, "m7")
	checkRun(t, r.waitFor(t, 5), 3, 7, top.Epoch)

	// The zero position asks for everything kept; the top for nothing.
	all, rec := subscribe(t, srvs[0], ch, &wsext.Position{})
	if !rec.Recovered || rec.Replayed != 7 {
		t.Fatalf("recovery from the zero position is %+v, want 7 replayed", rec)
	}
	checkRun(t, all.waitFor(t, 7), 1, 7, top.Epoch)
	_, rec = subscribe(t, srvs[1], ch, &wsext.Position{Offset: 7, Epoch: top.Epoch})
	if !rec.Recovered || rec.Replayed != 0 || rec.Top.Offset != 7 {
		t.Fatalf("recovery from the top is %+v, want recovered, none replayed", rec)
	}
}

// testRecoverFailures: a position that cannot be served says so, and the
// subscription goes on live.
func testRecoverFailures(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 3)
	const ch = "failures"
	var top wsext.Position
	for i := 1; i <= 6; i++ {
		top = publish(t, srvs[0], ch, fmt.Sprintf("m%d", i))
	}
	for _, tc := range []struct {
		name  string
		since wsext.Position
	}{
		{"too old", wsext.Position{Offset: 1, Epoch: top.Epoch}},
		{"another epoch", wsext.Position{Offset: 5, Epoch: "not-" + top.Epoch}},
		{"beyond the top", wsext.Position{Offset: 9, Epoch: top.Epoch}},
		{"zero, first message gone", wsext.Position{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, rec := subscribe(t, srvs[1], ch, &tc.since)
			if rec.Recovered || rec.Replayed != 0 || rec.Top != top {
				t.Fatalf("recovery from %+v is %+v, want not recovered at top %+v", tc.since, rec, top)
			}
			if got := r.messages(); len(got) != 0 {
				t.Fatalf("a failed recovery replayed %v", got)
			}
		})
	}
	// Recovery within what is kept still works.
	r, rec := subscribe(t, srvs[1], ch, &wsext.Position{Offset: 4, Epoch: top.Epoch})
	if !rec.Recovered || rec.Replayed != 2 {
		t.Fatalf("recovery from 4 of 6 with 3 kept is %+v", rec)
	}
	checkRun(t, r.waitFor(t, 2), 5, 6, top.Epoch)
	// The outcomes are counted (Stats.Recoveries, a metric in wsd).
	st := srvs[1].Stats().Recoveries
	if st["not_recovered"] < 4 || st["recovered"] < 1 {
		t.Fatalf("Stats.Recoveries = %v, want 4 not_recovered and 1 recovered at least", st)
	}
}

// testRecoverTooMuch: a subscriber further behind than half the
// MaxBackpressure (1 MiB by default) is told it is not recovered rather
// than sent more than its queue may hold; one within it is recovered.
func testRecoverTooMuch(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 100)
	const ch = "big"
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = 'x'
	}
	var pos []wsext.Position
	for range 8 {
		p, err := srvs[0].PublishPosition(ch, big, true)
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, p)
	}
	_, rec := subscribe(t, srvs[1], ch, &wsext.Position{Epoch: pos[0].Epoch})
	if rec.Recovered || rec.Replayed != 0 {
		t.Fatalf("800 KiB to replay against a 1 MiB queue: %+v, want not recovered", rec)
	}
	r, rec := subscribe(t, srvs[1], ch, &pos[4])
	if !rec.Recovered || rec.Replayed != 3 {
		t.Fatalf("300 KiB to replay: %+v, want recovered, 3 replayed", rec)
	}
	r.waitFor(t, 3)
}

// testRecoverUnderLoad: subscribers that come back while a publisher
// publishes get every message after their position exactly once, in order:
// the history and the live stream meet with no gap and no duplicate.
func testRecoverUnderLoad(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 10000)
	const ch = "load"
	const total = 600
	first := publish(t, srvs[0], ch, "m1")
	done := make(chan error, 1)
	go func() {
		for i := 2; i <= total; i++ {
			if _, err := srvs[0].PublishPosition(ch, []byte(fmt.Sprintf("m%d", i)), true); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var subs []*recorder
	var froms []uint64
	for i := range 8 {
		// Each joins from the position it last saw: the first message.
		r, rec := subscribe(t, srvs[i%2], ch, &first)
		if !rec.Recovered {
			t.Fatalf("subscriber %d not recovered: %+v", i, rec)
		}
		subs, froms = append(subs, r), append(froms, 2)
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, r := range subs {
		checkRun(t, r.waitFor(t, total-1), froms[i], total, first.Epoch)
	}
}

// testPublishWithoutWaiting: Publish, which does not ask for the position
// (and may not wait for it, HistoryForwarder), numbers and orders its
// messages with those of PublishPosition.
func testPublishWithoutWaiting(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 1000)
	const ch = "forward"
	r, _ := subscribe(t, srvs[1], ch, nil)
	for i := 1; i <= 200; i++ {
		if i%50 == 0 {
			if pos := publish(t, srvs[0], ch, fmt.Sprintf("m%d", i)); pos.Offset != uint64(i) {
				t.Fatalf("message %d got offset %d", i, pos.Offset)
			}
			continue
		}
		if err := srvs[0].Publish(ch, []byte(fmt.Sprintf("m%d", i)), true); err != nil {
			t.Fatal(err)
		}
	}
	got := r.waitFor(t, 200)
	checkRun(t, got, 1, 200, got[0].pos.Epoch)
}

// testTextAndBinary: a message keeps its kind and bytes, empty included,
// through publishing and recovery.
func testTextAndBinary(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 10)
	const ch = "kinds"
	live, _ := subscribe(t, srvs[1], ch, nil)
	want := []message{{data: "héllo", isText: true}, {data: "\x00\xff\x01"}, {data: "", isText: true}, {data: ""}}
	var epoch string
	for i, m := range want {
		pos, err := srvs[0].PublishPosition(ch, []byte(m.data), m.isText)
		if err != nil {
			t.Fatal(err)
		}
		want[i].pos, epoch = pos, pos.Epoch
	}
	replayed, _ := subscribe(t, srvs[0], ch, &wsext.Position{Epoch: epoch})
	for _, r := range []*recorder{live, replayed} {
		if got := r.waitFor(t, len(want)); !slices.Equal(got, want) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if _, err := srvs[0].PublishPosition(ch, []byte{0xff}, true); err == nil {
		t.Fatal("publishing invalid UTF-8 as text succeeded")
	}
}

// testPresence: the subscriptions listed in a channel's presence are seen
// from every Server, with join and leave events, until they end.
func testPresence(t *testing.T, h Harness) {
	srvs := h.New(t, 2, 10)
	const ch = "room"
	var evMu sync.Mutex
	var events []string
	record := func(ev wsext.PresenceEvent) {
		evMu.Lock()
		events = append(events, ev.Presence+" "+ev.Channel+" "+ev.User)
		evMu.Unlock()
	}
	// Two watchers: of this channel, and of another, whose events must not
	// mix with these.
	for _, watched := range []string{ch, ch + "-watch"} {
		w, _, err := srvs[1].SubscribeFuncWith(watched, func(wsext.Position, []byte, bool) {}, wsext.SubscribeOptions{OnPresence: record})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Unsubscribe()
	}
	members := func(s *wsext.Server) []string {
		ms, err := s.Presence(ch)
		if err != nil {
			t.Fatalf("Presence: %v", err)
		}
		var users []string
		for _, m := range ms {
			if m.Client == "" {
				t.Fatalf("a member without a client id: %+v", ms)
			}
			users = append(users, m.User)
		}
		return users
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var subs []*wsext.Subscription
	for i, user := range []string{"alice", "bob"} {
		sub, _, err := srvs[i].SubscribeFuncWith(ch, func(wsext.Position, []byte, bool) {}, wsext.SubscribeOptions{Presence: &wsext.Member{User: user}})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	for _, s := range srvs {
		eventually("both members listed on every server", func() bool { return slices.Equal(members(s), []string{"alice", "bob"}) })
	}
	subs[0].Unsubscribe()
	for _, s := range srvs {
		eventually("alice gone on every server", func() bool { return slices.Equal(members(s), []string{"bob"}) })
	}
	subs[1].Unsubscribe()
	eventually("join and leave events", func() bool {
		evMu.Lock()
		defer evMu.Unlock()
		return slices.Contains(events, "join room alice") && slices.Contains(events, "join room bob") &&
			slices.Contains(events, "leave room alice") && slices.Contains(events, "leave room bob")
	})
	evMu.Lock()
	defer evMu.Unlock()
	for _, e := range events {
		if strings.Contains(e, ch+"-watch") {
			t.Fatalf("an event of another channel arrived: %q", e)
		}
	}
}
