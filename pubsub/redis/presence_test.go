package redis

import (
	"context"
	"maps"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsd-server/wsd/pubsub/internal/redistest"
)

// presenceIs waits until e's Presence of channel is want.
func presenceIs(t *testing.T, e *hengine, channel string, want map[string]string) {
	t.Helper()
	var got map[string]string
	var err error
	eventually(t, 10*time.Second, "presence "+channel, func() bool {
		got, err = e.Presence(channel)
		return err == nil && maps.Equal(got, want)
	})
}

// Join, Leave and Presence across two engines; a closed engine's entries
// go with it, a crashed one's after its PresenceTTL.
func TestPresence(t *testing.T) {
	r := redistest.Start(t)
	a := startHistory(t, Options{URL: r.URL(), PresenceTTL: 30 * time.Second})
	b := startHistory(t, Options{URL: r.URL(), PresenceTTL: 30 * time.Second})

	a.Join("room", "a1", `{"user":"ann"}`)
	a.Join("room", "a2", "2")
	b.Join("room", "b1", "b")
	b.Join("hall", "b1", "b")
	all := map[string]string{"a1": `{"user":"ann"}`, "a2": "2", "b1": "b"}
	presenceIs(t, a, "room", all)
	presenceIs(t, b, "room", all)
	presenceIs(t, a, "hall", map[string]string{"b1": "b"})
	presenceIs(t, a, "empty", map[string]string{})

	for _, tc := range []struct {
		name   string
		change func()
		want   map[string]string
	}{
		{"join again replaces info", func() { a.Join("room", "a1", "new") },
			map[string]string{"a1": "new", "a2": "2", "b1": "b"}},
		{"leave", func() { b.Leave("room", "b1") },
			map[string]string{"a1": "new", "a2": "2"}},
		{"leave of a client not listed", func() { b.Leave("room", "a1"); b.Leave("room", "nobody") },
			map[string]string{"a1": "new", "a2": "2"}},
		{"join and leave at once", func() { b.Join("room", "b2", "x"); b.Leave("room", "b2") },
			map[string]string{"a1": "new", "a2": "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.change()
			presenceIs(t, a, "room", tc.want)
			presenceIs(t, b, "room", tc.want)
		})
	}
	presenceIs(t, a, "hall", map[string]string{"b1": "b"})

	// Closed: its entries go at once, long before their TTL, and the keys
	// of a channel with no entry with them.
	a.Close()
	presenceIs(t, b, "room", map[string]string{})
	presenceIs(t, b, "hall", map[string]string{"b1": "b"})
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer raw.Close()
	if n, err := raw.Exists(context.Background(), "wsd:presence:room", "wsd:presence-info:room").Result(); err != nil || n != 0 {
		t.Errorf("%d presence keys of an empty channel (%v)", n, err)
	}
}

// A process killed without Leave: its entries expire after its
// PresenceTTL, while a live process's, refreshed, stay.
func TestPresenceCrash(t *testing.T) {
	r := redistest.Start(t)
	live := startHistory(t, Options{URL: r.URL(), PresenceTTL: 30 * time.Second})
	short := startHistory(t, Options{URL: r.URL(), PresenceTTL: time.Second})
	crashed := startHistory(t, Options{URL: r.URL(), PresenceTTL: time.Second})
	live.Join("room", "l", "")
	short.Join("room", "s", "")
	crashed.Join("room", "c", "")
	presenceIs(t, live, "room", map[string]string{"l": "", "s": "", "c": ""})

	// The engine with the short TTL refreshes its entry: its expiry moves.
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr()})
	defer raw.Close()
	ctx := context.Background()
	first, err := raw.ZScore(ctx, "wsd:presence:room", "s").Result()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a refresh", func() bool {
		s, err := raw.ZScore(ctx, "wsd:presence:room", "s").Result()
		return err == nil && s > first
	})

	// The crash: nothing more from it reaches Redis, no refresh, no Leave.
	crashed.client.Close()
	var p map[string]string
	eventually(t, 10*time.Second, "the crashed engine's entry to expire", func() bool {
		p, err = live.Presence("room")
		_, ok := p["c"]
		return err == nil && !ok
	})
	if _, ok := p["l"]; !ok {
		t.Errorf("the live engine's entry went too: %v", p)
	}
	if n, _ := raw.HExists(ctx, "wsd:presence-info:room", "c").Result(); n {
		t.Error("the crashed engine's info outlived its entry")
	}
	// The keys last as long as their longest entry, not the last writer's
	// TTL.
	for _, key := range []string{"wsd:presence:room", "wsd:presence-info:room"} {
		if d, err := raw.PTTL(ctx, key).Result(); err != nil || d < 10*time.Second {
			t.Errorf("%s expires in %v (%v), want about the live engine's 30s", key, d, err)
		}
	}
}
