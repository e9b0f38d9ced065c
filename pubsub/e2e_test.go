package pubsub_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsd-server/wsd/pubsub/internal/redistest"
)

// subscribers dials n /pubsub/{channel} clients and returns them with the
// workers they reached, failing unless they reached want workers.
func subscribers(t *testing.T, addr, channel string, n, want int) ([]*client, map[int]int) {
	t.Helper()
	subs := make([]*client, n)
	perWorker := make(map[int]int)
	for i := range subs {
		subs[i] = dialPubSub(t, addr, channel)
		perWorker[subs[i].worker]++
	}
	// The kernel spreads connections over the workers' sockets by hash;
	// top up in the unlikely case one was missed.
	for extra := 0; len(perWorker) < want; extra++ {
		if extra > 100 {
			t.Fatalf("subscribers reached workers %v, want %d workers", perWorker, want)
		}
		c := dialPubSub(t, addr, channel)
		subs = append(subs, c)
		perWorker[c.worker]++
	}
	return subs, perWorker
}

// wsPublisher returns a function that sends each message from c.
func wsPublisher(t *testing.T, c *client) func(string) {
	return func(msg string) { c.send(t, msg) }
}

// postPublisher returns a function that POSTs each message to addr.
func postPublisher(t *testing.T, addr, channel string, header ...string) func(string) {
	return func(msg string) {
		if code := publish(t, addr, channel, msg, header...); code != http.StatusNoContent {
			t.Fatalf("POST /publish/%s: %d", channel, code)
		}
	}
}

// One daemon, two workers: 200 subscribers spread over both receive every
// message of a publisher on either worker, in order; a publisher does not
// get its own messages back.
func TestClusterFanOut(t *testing.T) {
	d := startDaemon(t, 2)
	subs, perWorker := subscribers(t, d.addr, "fan", 200, 2)
	workers := make([]int, 0, 2)
	for w := range perWorker {
		workers = append(workers, w)
	}
	t.Logf("subscribers per worker: %v", perWorker)
	pubA := dialOn(t, d.addr, "fan", func(w int) bool { return w == workers[0] })
	pubB := dialOn(t, d.addr, "fan", func(w int) bool { return w == workers[1] })
	all := append(slices.Clone(subs), pubA, pubB)
	probe(t, "A", wsPublisher(t, pubA), append(slices.Clone(subs), pubB))
	probe(t, "B", wsPublisher(t, pubB), append(slices.Clone(subs), pubA))
	probe(t, "P", postPublisher(t, d.addr, "fan"), all)

	const n = 100
	for i := range n {
		pubA.send(t, "A:"+strconv.Itoa(i))
		pubB.send(t, "B:"+strconv.Itoa(i))
	}
	waitUntil(t, 15*time.Second, "every message at every subscriber", func() bool {
		for _, s := range subs {
			if s.total() < 2*n {
				return false
			}
		}
		return pubA.total() >= n && pubB.total() >= n
	})
	for i, s := range subs {
		checkOrder(t, fmt.Sprintf("subscriber %d (worker %d)", i, s.worker), s, n, "A", "B")
	}
	checkOrder(t, "publisher A", pubA, n, "B")
	checkOrder(t, "publisher B", pubB, n, "A")
}

// A worker killed with SIGKILL: its replacement's subscribers receive the
// other worker's messages, and the other worker's subscribers receive the
// replacement's.
func TestClusterWorkerRestart(t *testing.T) {
	d := startDaemon(t, 2)
	subs, perWorker := subscribers(t, d.addr, "r", 10, 2)
	var victim, survivor int
	for w := range perWorker {
		if victim == 0 {
			victim = w
		} else {
			survivor = w
		}
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.worker == victim {
			select {
			case <-s.ended:
			case <-time.After(10 * time.Second):
				t.Fatal("a subscriber of the killed worker is still connected")
			}
		}
	}
	// The master replaces the worker; dial until the new one answers.
	var fresh *client
	waitUntil(t, 15*time.Second, "the replacement worker", func() bool {
		c := dialPubSub(t, d.addr, "r")
		if c.worker != victim && c.worker != survivor {
			fresh = c
			return true
		}
		c.CloseNow()
		return false
	})
	fromSurvivor := dialOn(t, d.addr, "r", func(w int) bool { return w == survivor })
	var onSurvivor []*client
	for _, s := range subs {
		if s.worker == survivor {
			onSurvivor = append(onSurvivor, s)
		}
	}
	probe(t, "S", wsPublisher(t, fromSurvivor), []*client{fresh})
	probe(t, "F", wsPublisher(t, fresh), append(onSurvivor, fromSurvivor))
	const n = 20
	for i := range n {
		fresh.send(t, "F:"+strconv.Itoa(i))
		fromSurvivor.send(t, "S:"+strconv.Itoa(i))
	}
	waitUntil(t, 10*time.Second, "the messages", func() bool {
		return fresh.total() >= n && fromSurvivor.total() >= n && onSurvivor[0].total() >= 2*n
	})
	checkOrder(t, "the replacement's subscriber", fresh, n, "S")
	checkOrder(t, "the survivor's publisher", fromSurvivor, n, "F")
	for _, s := range onSurvivor {
		checkOrder(t, "a survivor's subscriber", s, n, "F", "S")
	}
}

// A binary upgrade (SIGUSR2) re-executes the master, whose relay comes back
// on the same socket: the workers reconnect to it and pub/sub spans them
// again.
func TestClusterBinaryUpgrade(t *testing.T) {
	d := startDaemon(t, 2)
	d.cmd.Process.Signal(syscall.SIGUSR2)
	d.waitNotify("RELOADING=1", 10*time.Second)
	d.waitNotify("READY=1", 20*time.Second)
	// The old workers drain; a connection that reaches one now is closed.
	waitUntil(t, 10*time.Second, "the old workers to stop", func() bool {
		return strings.Count(d.logText(), `"msg":"worker stopped"`) == 2
	})
	subs, perWorker := subscribers(t, d.addr, "u", 10, 2)
	var pubs []*client
	for w := range perWorker {
		// The new workers started before the exec, so they were connected
		// to the old image's relay and had to reconnect.
		waitUntil(t, 10*time.Second, fmt.Sprintf("worker %d to reconnect to the relay", w), func() bool {
			return strings.Contains(d.logText(), fmt.Sprintf(`reconnected to the master's relay","worker":%d,`, w))
		})
		pubs = append(pubs, dialOn(t, d.addr, "u", func(got int) bool { return got == w }))
	}
	probe(t, "0", wsPublisher(t, pubs[0]), append(slices.Clone(subs), pubs[1]))
	probe(t, "1", wsPublisher(t, pubs[1]), append(slices.Clone(subs), pubs[0]))
}

// Two daemons on different ports share one Redis, standing in for two
// hosts: a publish through either, by WebSocket or by POST /publish,
// reaches the subscribers of both.
func TestRedisTwoDaemons(t *testing.T) {
	r := redistest.Start(t)
	a := startDaemon(t, 2, "--redis", r.URL(), "--publish-token", "tok")
	b := startDaemon(t, 1, "--redis", r.URL(), "--publish-token", "tok")
	subsA, _ := subscribers(t, a.addr, "hosts", 20, 2)
	subsB, _ := subscribers(t, b.addr, "hosts", 10, 1)
	wsA := dialPubSub(t, a.addr, "hosts")
	all := append(slices.Clone(subsA), subsB...)

	postB := postPublisher(t, b.addr, "hosts", "Authorization", "Bearer tok")
	probe(t, "W", wsPublisher(t, wsA), all)
	probe(t, "P", postB, append(all, wsA))
	const n = 50
	for i := range n {
		wsA.send(t, "W:"+strconv.Itoa(i))
		postB("P:" + strconv.Itoa(i))
	}
	waitUntil(t, 15*time.Second, "every message on both daemons", func() bool {
		for _, s := range all {
			if s.total() < 2*n {
				return false
			}
		}
		return wsA.total() >= n
	})
	for i, s := range all {
		checkOrder(t, fmt.Sprintf("subscriber %d", i), s, n, "W", "P")
	}
	checkOrder(t, "the WebSocket publisher", wsA, n, "P")
}

// Redis killed and restarted during a test: publishes during the outage
// fail visibly (503, close 1013); the engines reconnect and resubscribe;
// delivery resumes.
func TestRedisOutage(t *testing.T) {
	r := redistest.Start(t)
	a := startDaemon(t, 1, "--redis", r.URL())
	b := startDaemon(t, 2, "--redis", r.URL())
	subsB, _ := subscribers(t, b.addr, "out", 6, 2)
	subA := dialPubSub(t, a.addr, "out")
	probe(t, "before", postPublisher(t, a.addr, "out"), subsB)

	r.Kill()
	if code := publish(t, a.addr, "out", "lost"); code != http.StatusServiceUnavailable {
		t.Errorf("POST /publish with Redis down: %d, want 503", code)
	}
	// A WebSocket publisher whose message cannot go out is closed with
	// 1013, Try Again Later. A subscriber of its own process still gets
	// the message.
	wsPub := dialPubSub(t, a.addr, "out")
	wsPub.send(t, "lost too")
	select {
	case <-wsPub.ended:
		if wsPub.code != 1013 {
			t.Errorf("the WebSocket publisher was closed with %v, want 1013", wsPub.code)
		}
	case <-time.After(10 * time.Second):
		t.Error("the WebSocket publisher was not told its message was lost")
	}
	waitUntil(t, 5*time.Second, "the local subscriber to get the message", func() bool { return subA.has("lost too") })
	if !strings.Contains(a.logText(), "publish to Redis failed") {
		t.Error("the failed publish was not logged")
	}

	r.Restart()
	// The first publishes after the restart may still find Redis's old
	// connections; then they go through, and reach b again.
	waitUntil(t, 15*time.Second, "publishing to work again", func() bool {
		return publish(t, a.addr, "out", "probe:again") == http.StatusNoContent
	})
	probe(t, "after", postPublisher(t, a.addr, "out"), subsB)
	for _, s := range subsB {
		if s.has("lost") || s.has("lost too") {
			t.Error("a message published while Redis was down arrived on the other daemon")
		}
	}
	if !strings.Contains(b.logText(), "reconnected to Redis") {
		t.Error("b did not log its reconnection")
	}
}

// Bad channel names, a missing or wrong token, the wrong method.
func TestEndpointErrors(t *testing.T) {
	d := startDaemon(t, 1, "--publish-token", "s3cret")
	auth := []string{"Authorization", "Bearer s3cret"}
	tests := []struct {
		name    string
		method  string
		path    string
		header  []string
		status  int
		hasAuth bool // a WWW-Authenticate challenge
	}{
		{"ok", "POST", "/publish/room", auth, 204, false},
		{"ok all characters", "POST", "/publish/A-Z_a.z:0-9", auth, 204, false},
		{"no token", "POST", "/publish/room", nil, 401, true},
		{"wrong token", "POST", "/publish/room", []string{"Authorization", "Bearer nope"}, 401, true},
		{"basic auth", "POST", "/publish/room", []string{"Authorization", "Basic czNjcmV0"}, 401, true},
		{"lower-case scheme", "POST", "/publish/room", []string{"Authorization", "bearer s3cret"}, 204, false},
		{"empty name", "POST", "/publish/", auth, 400, false},
		{"space", "POST", "/publish/a%20b", auth, 400, false},
		{"slash", "POST", "/publish/a/b", auth, 400, false},
		{"non-ASCII", "POST", "/publish/caf%C3%A9", auth, 400, false},
		{"129 bytes", "POST", "/publish/" + strings.Repeat("x", 129), auth, 400, false},
		{"128 bytes", "POST", "/publish/" + strings.Repeat("x", 128), auth, 204, false},
		{"GET", "GET", "/publish/room", auth, 405, false},
		{"pubsub bad name", "GET", "/pubsub/a%21", nil, 400, false},
		{"pubsub empty name", "GET", "/pubsub/", nil, 400, false},
		{"pubsub without upgrade", "GET", "/pubsub/room", nil, 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://"+d.addr+tt.path, strings.NewReader("m"))
			for i := 0; i+1 < len(tt.header); i += 2 {
				req.Header.Set(tt.header[i], tt.header[i+1])
			}
			if strings.HasPrefix(tt.path, "/pubsub/") && tt.name != "pubsub without upgrade" {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); (got != "") != tt.hasAuth || tt.hasAuth && !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if tt.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q, want POST", resp.Header.Get("Allow"))
			}
		})
	}
}

// --pubsub-echo gives a /pubsub client its own messages; without it (the
// default, checked in TestClusterFanOut) it does not. POST /publish sends
// text when the body is UTF-8, binary otherwise or with
// application/octet-stream.
func TestEchoAndTypes(t *testing.T) {
	d := startDaemon(t, 1, "--pubsub-echo")
	c := dialPubSub(t, d.addr, "e")
	probe(t, "self", wsPublisher(t, c), []*client{c})

	sub := dialPubSub(t, d.addr, "e")
	probe(t, "P", postPublisher(t, d.addr, "e"), []*client{sub})
	publish(t, d.addr, "e", "text")
	publish(t, d.addr, "e", "\xff\xfe")
	publish(t, d.addr, "e", "forced", "Content-Type", "application/octet-stream")
	waitUntil(t, 5*time.Second, "the messages", func() bool { return sub.has("forced") })
	want := map[string]websocket.MessageType{
		"text":     websocket.MessageText,
		"\xff\xfe": websocket.MessageBinary,
		"forced":   websocket.MessageBinary,
	}
	for msg, typ := range want {
		if got := sub.typeOf(msg); got != typ {
			t.Errorf("%q arrived as %v, want %v", msg, got, typ)
		}
	}
}
