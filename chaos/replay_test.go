//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestReplayStorm: the real-time gateway's features under hostile load.
// With --history-size and --presence on two workers (history and presence
// in the master), a channel holds 400 messages of 1 KiB; then 40 clients
// for 10 s reconnect in a loop from offset 0, each reconnection asking for
// the whole history, a presence listing with join and leave events, and
// (half of them) never reading what is replayed. The daemon must stay
// within 150 MB of its baseline, the probe (whose pub/sub runs through the
// same history) must lose nothing, and afterwards the channel's presence
// must be empty and a fresh subscriber recovered.
func TestReplayStorm(t *testing.T) {
	s := begin(t, daemonOpts{processes: 2, args: []string{"--history-size", "1000", "--presence"}}, probeOpts{})
	const (
		ch       = "storm"
		kept     = 400
		size     = 1024
		clients  = 40
		duration = 10 * time.Second
	)
	body := strings.Repeat("h", size)
	var epoch string
	for range kept {
		resp, err := plainHTTP.Post("http://"+s.d.addr+"/publish/"+ch, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var pos struct{ Epoch string }
		json.NewDecoder(resp.Body).Decode(&pos)
		resp.Body.Close()
		epoch = pos.Epoch
	}
	if epoch == "" {
		t.Fatal("POST /publish gave no epoch: is history on?")
	}

	var reconnects, replayed, failures atomic.Int64
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := range clients {
		reads := i%2 == 0
		wg.Go(func() {
			url := fmt.Sprintf("ws://%s/pubsub/%s?format=json&presence=1&user=attacker%d&offset=0&epoch=%s", s.d.addr, ch, i, epoch)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
					HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
				})
				if err != nil {
					cancel()
					failures.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				reconnects.Add(1)
				if reads {
					c.SetReadLimit(1 << 20)
					for n := 0; n <= kept; n++ {
						if _, _, err := c.Read(ctx); err != nil {
							break
						}
						replayed.Add(1)
					}
				} else {
					time.Sleep(20 * time.Millisecond)
				}
				c.CloseNow()
				cancel()
			}
		})
	}
	wg.Wait()
	s.endAttack(150 * MB)
	s.r.notef("%d reconnections from offset 0 (%d failed dials), %d messages replayed to the half that read; %.0f MB of history asked for",
		reconnects.Load(), failures.Load(), replayed.Load(), float64(reconnects.Load()*kept*size)/MB)
	recov, _ := s.d.metric("wsd_pubsub_recoveries_total")
	s.r.notef("wsd_pubsub_recoveries_total %v", recov)
	if reconnects.Load() < clients {
		t.Errorf("only %d reconnections in %s", reconnects.Load(), duration)
	}

	// The attackers are gone from the presence, and a newcomer recovers.
	gone := time.Now().Add(15 * time.Second)
	for {
		resp, err := plainHTTP.Get("http://" + s.d.addr + "/presence/" + ch)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Count int }
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if p.Count == 0 {
			break
		}
		if time.Now().After(gone) {
			t.Fatalf("%d attackers still listed in the presence 15 s after they left", p.Count)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/pubsub/%s?format=json&offset=%d&epoch=%s", s.d.addr, ch, kept-5, epoch), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, data, err := c.Read(ctx)
	var st struct {
		Recovered bool
		Replayed  int
	}
	if err != nil || json.Unmarshal(data, &st) != nil || !st.Recovered || st.Replayed != 5 {
		t.Fatalf("a newcomer after the storm: %s %v, want recovered with 5 replayed", data, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	s.finish(true)
}
