package redis

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsd-server/wsd/internal/ratelog"
	"github.com/wsd-server/wsd/pubsub/internal/redistest"
)

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

// syncBuffer is a log destination that tests read while engines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type engine struct {
	*Engine
	in   *inbox
	logs *syncBuffer
}

func start(t *testing.T, opts Options) *engine {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	in := &inbox{}
	if err := e.Start(in.deliver); err != nil {
		t.Fatal(err)
	}
	return &engine{e, in, logs}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliverable publishes probes from pub on channel until sub delivers one:
// then sub's subscription has reached Redis.
func deliverable(t *testing.T, pub, sub *engine, channel string) {
	t.Helper()
	eventually(t, 10*time.Second, "a probe on "+channel, func() bool {
		probe := "probe" + strconv.FormatInt(probes.Add(1), 10)
		pub.Publish(channel, []byte(probe), true)
		time.Sleep(10 * time.Millisecond)
		return sub.in.has(probe)
	})
}

var probes atomic.Int64

func TestPubSub(t *testing.T) {
	r := redistest.Start(t)
	a := start(t, Options{URL: r.URL()})
	b := start(t, Options{URL: r.URL()})
	a.Subscribe("room")
	b.Subscribe("room")
	deliverable(t, a, b, "room")
	deliverable(t, b, a, "room")

	// What the channel looks like on Redis.
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rawSub := raw.Subscribe(ctx, "wsd:room")
	defer rawSub.Close()
	if _, err := rawSub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}

	const n = 300
	for i := range n {
		if err := a.Publish("room", []byte("a"+strconv.Itoa(i)), true); err != nil {
			t.Fatal(err)
		}
	}
	b.Publish("room", []byte{0, 0xff}, false)
	// Not wsd's: ignored.
	raw.Publish(ctx, "wsd:room", "plain string")
	raw.Publish(ctx, "wsd:room", "\x01\x01originXX\xff")
	a.Publish("room", []byte("last"), true)

	eventually(t, 10*time.Second, "b to get every message", func() bool { return b.in.has("last") })
	var got []string
	for _, m := range b.in.all() {
		if !strings.HasPrefix(m.data, "probe") {
			got = append(got, m.data)
		}
	}
	if len(got) != n+1 {
		t.Fatalf("b got %d messages, want %d: %q", len(got), n+1, got)
	}
	for i := range n {
		if got[i] != "a"+strconv.Itoa(i) {
			t.Fatalf("b's message %d is %q", i, got[i])
		}
	}
	eventually(t, 10*time.Second, "a to get b's binary message", func() bool { return a.in.has("\x00\xff") })
	for _, m := range a.in.all() {
		if m.data == "\x00\xff" && (m.text || m.channel != "room") {
			t.Errorf("binary message delivered as %+v", m)
		}
		if strings.HasPrefix(m.data, "a") || m.data == "last" {
			t.Errorf("a got its own message %q back", m.data)
		}
		if strings.Contains(m.data, "plain") || strings.Contains(m.data, "origin") {
			t.Errorf("a delivered a foreign message %q", m.data)
		}
	}

	m, err := rawSub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Channel != "wsd:room" || m.Payload[0] != payloadVersion || m.Payload[1] != flagText || m.Payload[headerSize:] != "a0" {
		t.Errorf("on Redis: channel %q, payload %q", m.Channel, m.Payload)
	}

	// After Unsubscribe nothing more arrives.
	b.Unsubscribe("room")
	eventually(t, 10*time.Second, "the unsubscription", func() bool {
		ch, err := raw.PubSubNumSub(ctx, "wsd:room").Result()
		return err == nil && ch["wsd:room"] == 2 // a and rawSub
	})
	before := len(b.in.all())
	a.Publish("room", []byte("after"), true)
	rawSub.ReceiveMessage(ctx) // it is through Redis now
	if len(b.in.all()) != before {
		t.Errorf("b got %+v after unsubscribing", b.in.all()[before:])
	}
}

// Engines with different prefixes share nothing.
func TestPrefix(t *testing.T) {
	r := redistest.Start(t)
	a := start(t, Options{URL: r.URL(), Prefix: "app1:"})
	b := start(t, Options{URL: r.URL(), Prefix: "app1:"})
	c := start(t, Options{URL: r.URL()})
	b.Subscribe("p")
	c.Subscribe("p")
	deliverable(t, a, b, "p")
	a.Publish("p", []byte("for app1"), true)
	eventually(t, 5*time.Second, "b's message", func() bool { return b.in.has("for app1") })
	if len(c.in.all()) != 0 {
		t.Errorf("an engine with another prefix got %+v", c.in.all())
	}
}

// Redis killed and restarted: publishes fail, visibly, while it is down;
// then the engine resubscribes and delivery resumes.
func TestRedisRestart(t *testing.T) {
	r := redistest.Start(t)
	a := start(t, Options{URL: r.URL(), Timeout: time.Second})
	b := start(t, Options{URL: r.URL(), Timeout: time.Second})
	b.Subscribe("r")
	deliverable(t, a, b, "r")

	r.Kill()
	err := a.Publish("r", []byte("lost"), true)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish with Redis down: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(a.logs.String(), "publish to Redis failed") {
		t.Errorf("the failed publish was not logged:\n%s", a.logs.String())
	}
	// A subscription made while Redis is down is kept for later.
	b.Subscribe("made-while-down")
	eventually(t, 5*time.Second, "b to notice", func() bool { return strings.Contains(b.logs.String(), "lost Redis") })

	r.Restart()
	deliverable(t, a, b, "r")
	deliverable(t, a, b, "made-while-down")
	if !strings.Contains(b.logs.String(), "reconnected to Redis") {
		t.Errorf("the reconnection was not logged:\n%s", b.logs.String())
	}
	if b.in.has("lost") {
		t.Error("a message published while Redis was down was delivered")
	}
}

// A Redis that hangs (SIGSTOP) is noticed by the health check; publishes
// time out; once it resumes, so does delivery.
func TestRedisHang(t *testing.T) {
	r := redistest.Start(t)
	a := start(t, Options{URL: r.URL(), Timeout: 300 * time.Millisecond})
	b := start(t, Options{URL: r.URL(), Timeout: 300 * time.Millisecond, HealthInterval: 200 * time.Millisecond})
	b.Subscribe("h")
	deliverable(t, a, b, "h")

	r.Signal(syscall.SIGSTOP)
	if err := a.Publish("h", []byte("hung"), true); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Publish to a hung Redis: %v, want ErrUnavailable", err)
	}
	// Redis is known to be down now: the next publishers, and every
	// subscriber, do not wait for it.
	start := time.Now()
	if err := a.Publish("h", []byte("hung"), true); !errors.Is(err, ErrUnavailable) {
		t.Errorf("second Publish to a hung Redis: %v, want ErrUnavailable", err)
	}
	a.Subscribe("h2")
	b.Unsubscribe("h")
	b.Subscribe("h")
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Publish and Subscribe took %s with Redis down; they should not wait for it", d)
	}
	eventually(t, 10*time.Second, "the health check", func() bool {
		return strings.Contains(b.logs.String(), "Redis does not answer")
	})
	r.Signal(syscall.SIGCONT)
	deliverable(t, a, b, "h")
}

func TestNewBadURL(t *testing.T) {
	if _, err := New(Options{URL: "http://localhost"}); err == nil {
		t.Error("New accepted an http URL")
	}
}

// TestDownLogBounded publishes and subscribes many times with Redis down:
// every publish fails, and the log gets at most one line a second of each
// kind (debug lines included), the line after the first counting the
// failures it stands for.
func TestDownLogBounded(t *testing.T) {
	r := redistest.Start(t)
	a := start(t, Options{URL: r.URL(), Timeout: time.Second})
	if err := a.Publish("x", []byte("up"), true); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	begin := time.Now()
	const publishes = 3000
	failed := 0
	for i := range publishes {
		if err := a.Publish("x", []byte("lost"), true); errors.Is(err, ErrUnavailable) {
			failed++
		}
		if i%100 == 0 {
			// Spread over more than a second, so that a second line
			// comes, counting the others.
			a.Subscribe("s" + strconv.Itoa(i))
			time.Sleep(50 * time.Millisecond)
		}
	}
	elapsed := time.Since(begin)
	if failed != publishes {
		t.Errorf("%d of %d publishes failed with Redis down, want all", failed, publishes)
	}
	perMsg := map[string]int{}
	for line := range strings.Lines(a.logs.String()) {
		if m := logMsg.FindStringSubmatch(line); m != nil {
			perMsg[m[1]]++
		}
	}
	t.Logf("in %s: %v", elapsed.Round(time.Millisecond), perMsg)
	bound := int(elapsed/time.Second) + 2
	for msg, n := range perMsg {
		if n > bound {
			t.Errorf("%d lines %q in %s, want at most %d", n, msg, elapsed.Round(time.Millisecond), bound)
		}
	}
	const failedMsg = `"pub/sub: publish to Redis failed; messages lost"`
	if perMsg[failedMsg] < 2 || !strings.Contains(a.logs.String(), "suppressed=") {
		t.Errorf("want a first line %s and a later one with the count suppressed:\n%s", failedMsg, a.logs.String())
	}
}

// logMsg finds the message of a slog text line.
var logMsg = regexp.MustCompile(`\bmsg=("(?:[^"\\]|\\.)*"|\S+)`)

// TestRedisLoggerBounded checks that go-redis's lines, one per failed dial,
// pass at most once a second per format.
func TestRedisLoggerBounded(t *testing.T) {
	logs := &syncBuffer{}
	l := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := redisLogger{l, ratelog.New(l, time.Hour)}
	for i := range 1000 {
		r.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 1, i)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("%d lines for 1000 failed dials, want 1:\n%s", n, logs.String())
	}
}
