package worker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

type presenceBody struct {
	Channel string `json:"channel"`
	Count   int    `json:"count"`
	Members []struct {
		Client string `json:"client"`
		User   string `json:"user"`
	} `json:"members"`
}

// getPresence is GET /presence/{channel} with an optional Authorization.
func getPresence(t *testing.T, addr, channel, authorization string) (int, presenceBody) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/presence/"+channel, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body presenceBody
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, body
}

func users(b presenceBody) string {
	var u []string
	for _, m := range b.Members {
		u = append(u, m.User)
	}
	return strings.Join(u, ",")
}

// waitPresence polls GET /presence until it lists want (users, sorted, comma separated).
func waitPresence(t *testing.T, addr, channel, authorization, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, b := getPresence(t, addr, channel, authorization)
		if code == http.StatusOK && users(b) == want && b.Count == len(b.Members) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /presence/%s: %d %+v, want users %q", channel, code, b, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPresence: /pubsub and /sse subscribers are listed under the name
// they give, join and leave events reach the subscribers that ask, and the
// endpoint answers the documented errors.
func TestPresence(t *testing.T) {
	cfg := testConfig()
	cfg.Processes = 1
	cfg.Presence = true
	cfg.PublishToken = "tok"
	addr := servedWorker(t, cfg, Options{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const bearer = "Bearer tok"

	waitPresence(t, addr, "room", bearer, "")
	watcher, _, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/room?format=json&presence=1&user=watcher", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.CloseNow()
	// Its status says it is subscribed, to the events too.
	if _, b, err := watcher.Read(ctx); err != nil || !strings.Contains(string(b), `"status":"subscribed"`) {
		t.Fatalf("watcher's first message: %s, %v", b, err)
	}
	alice, _, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/room?user=alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/sse/room?user=bob", nil)
	sse, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	waitPresence(t, addr, "room", bearer, "alice,bob,watcher")
	alice.Close(websocket.StatusNormalClosure, "")
	sse.Body.Close()
	waitPresence(t, addr, "room", bearer, "watcher")

	// The watcher heard the status, then alice and bob come and go.
	var events []string
	for len(events) < 5 { // its own join, then alice's and bob's
		_, b, err := watcher.Read(ctx)
		if err != nil {
			t.Fatalf("watcher: %v after %v", err, events)
		}
		var ev struct{ Presence, Channel, User, Status string }
		json.Unmarshal(b, &ev)
		if ev.Presence != "" {
			if ev.Channel != "room" {
				t.Fatalf("an event of channel %q: %s", ev.Channel, b)
			}
			events = append(events, ev.Presence+" "+ev.User)
		}
	}
	for _, want := range []string{"join watcher", "join alice", "join bob", "leave alice", "leave bob"} {
		if !strings.Contains(strings.Join(events, ";"), want) {
			t.Errorf("events %v lack %q", events, want)
		}
	}

	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/presence/room", "", http.StatusUnauthorized},
		{"wrong token", "/presence/room", "Bearer nope", http.StatusUnauthorized},
		{"bad channel", "/presence/no%20spaces", bearer, http.StatusBadRequest},
		{"user too long", "/pubsub/room?user=" + strings.Repeat("x", 65), "", http.StatusBadRequest},
		{"user with a control byte", "/sse/room?user=" + url.QueryEscape("a\x01"), "", http.StatusBadRequest},
		{"presence events without json", "/pubsub/room?presence=1", "", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+addr+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if strings.HasPrefix(tc.path, "/pubsub/") {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s: %s, want %d", tc.path, resp.Status, tc.want)
			}
		})
	}
}

// TestPresenceOffAndTokens: without --presence the endpoint is 404; with
// subscriber tokens, the token's subject is the user and a token for the
// channel may ask who is there.
func TestPresenceOffAndTokens(t *testing.T) {
	cfg := testConfig()
	cfg.Processes = 1
	off := servedWorker(t, cfg, Options{Logger: quiet})
	if code, _ := getPresence(t, off, "room", ""); code != http.StatusNotFound {
		t.Fatalf("presence off: %d, want 404", code)
	}

	cfg.Presence = true
	cfg.JWTSecret = testSecret
	addr := servedWorker(t, cfg, Options{Logger: quiet})
	claims := claimsFor("room")
	claims["sub"] = "carol"
	token := hs256(t, claims)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// ?user= is ignored when tokens say who is who.
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/room?user=mallory&token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	waitPresence(t, addr, "room", "Bearer "+token, "carol")
	if code, _ := getPresence(t, addr, "room", ""); code != http.StatusUnauthorized {
		t.Fatalf("presence without a token: %d, want 401", code)
	}
	if code, _ := getPresence(t, addr, "room", "Bearer "+hs256(t, claimsFor("other"))); code != http.StatusForbidden {
		t.Fatalf("presence with a token for another channel: %d, want 403", code)
	}
}
