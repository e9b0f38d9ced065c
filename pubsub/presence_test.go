package pubsub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsd-server/wsd/pubsub/internal/redistest"
)

// presenceOf is GET /presence/{channel}: the number of members.
func presenceOf(t *testing.T, addr, channel string, header ...string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/presence/"+channel, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET /presence/%s: %v", channel, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /presence/%s: %s", channel, resp.Status)
	}
	var p struct {
		Channel string `json:"channel"`
		Count   int    `json:"count"`
		Members []struct {
			Client string `json:"client"`
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Channel != channel || p.Count != len(p.Members) {
		t.Fatalf("GET /presence/%s answered %+v", channel, p)
	}
	clients := make(map[string]bool)
	for _, m := range p.Members {
		if m.Client == "" || clients[m.Client] {
			t.Fatalf("GET /presence/%s: an empty or repeated client in %+v", channel, p.Members)
		}
		clients[m.Client] = true
	}
	return p.Count
}

// dialEvents subscribes to a channel's presence events over /pubsub.
func dialEvents(t *testing.T, addr, channel string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/"+channel+"?format=json&presence=1", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	cl := &client{Conn: c, ended: make(chan struct{})}
	cl.worker, _ = strconv.Atoi(resp.Header.Get("Wsd-Worker"))
	go cl.read()
	return cl
}

// dialPubSubQuery dials /pubsub/{channel} with a query.
func dialPubSubQuery(t *testing.T, addr, channel, query string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/"+channel+query, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func (c *client) count(substr string) int {
	n := 0
	for _, m := range c.received() {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// testPresence: subscribers on two daemons (or two workers) are listed on
// every one of them, with join and leave events; a worker killed with
// subscribers on it takes them out of the listing, within the presence
// TTL with Redis, at once with the cluster engine.
func testPresence(t *testing.T, a, b *daemon, token string) {
	const ch = "room"
	auth := []string{"Authorization", "Bearer " + token}
	watcher := dialEvents(t, b.addr, ch) // itself a member
	// Its subscription to the events reaches the other workers a moment
	// later: probe until a join from a arrives.
	n := 0
	waitUntil(t, 15*time.Second, "a join event from a", func() bool {
		n++
		p := dialPubSubQuery(t, a.addr, ch, "?user=probe"+strconv.Itoa(n))
		time.Sleep(50 * time.Millisecond)
		p.CloseNow()
		return watcher.count(`"user":"probe`) > 0
	})
	for _, d := range []*daemon{a, b} {
		waitUntil(t, 15*time.Second, "the probes gone", func() bool { return presenceOf(t, d.addr, ch, auth...) == 1 })
	}
	joins := watcher.count(`"presence":"join"`)
	subsA, perWorker := subscribers(t, a.addr, ch, 6, 2)
	subsB, _ := subscribers(t, b.addr, ch, 3, 0)
	want := 1 + len(subsA) + len(subsB)
	for _, d := range []*daemon{a, b} {
		waitUntil(t, 15*time.Second, "every subscriber listed", func() bool { return presenceOf(t, d.addr, ch, auth...) == want })
	}
	waitUntil(t, 15*time.Second, "the join events", func() bool { return watcher.count(`"presence":"join"`) >= joins+want-1 })

	// A worker of a dies with its subscribers; not the watcher's.
	var victim int
	for w := range perWorker {
		if w != watcher.worker {
			victim = w
			break
		}
	}
	gone := 0
	for _, s := range append(subsA, subsB...) {
		if s.worker == victim {
			gone++
		}
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*daemon{a, b} {
		waitUntil(t, 20*time.Second, "the killed worker's subscribers gone", func() bool {
			return presenceOf(t, d.addr, ch, auth...) == want-gone
		})
	}
	// A subscriber that leaves cleanly is gone at once, with an event.
	var leaver *client
	for _, s := range append(subsA, subsB...) {
		if s.worker != victim {
			leaver = s
			break
		}
	}
	leaver.Close(websocket.StatusNormalClosure, "")
	waitUntil(t, 15*time.Second, "the leave", func() bool { return presenceOf(t, b.addr, ch, auth...) == want-gone-1 })
	waitUntil(t, 15*time.Second, "a leave event", func() bool { return watcher.count(`"presence":"leave"`) >= 1 })

	// The endpoint is behind the publish token.
	req, _ := http.NewRequest("GET", "http://"+a.addr+"/presence/"+ch, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /presence without the token: %s, want 401", resp.Status)
	}
}

func TestPresenceRedis(t *testing.T) {
	r := redistest.Start(t)
	flags := []string{"--redis", r.URL(), "--presence", "--presence-ttl", "2s", "--publish-token", "tok"}
	a := startDaemon(t, 2, flags...)
	b := startDaemon(t, 1, flags...)
	testPresence(t, a, b, "tok")
}

func TestPresenceCluster(t *testing.T) {
	d := startDaemon(t, 2, "--presence", "--publish-token", "tok")
	testPresence(t, d, d, "tok")
}
