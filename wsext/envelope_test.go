package wsext

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"
)

type status struct {
	Status    string `json:"status"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered bool   `json:"recovered"`
	Replayed  int    `json:"replayed"`
}

// readStatus reads the first message of an envelope subscription.
func readStatus(t *testing.T, ctx context.Context, c *websocket.Conn) status {
	t.Helper()
	_, b, err := c.Read(ctx)
	var st status
	if err != nil || json.Unmarshal(b, &st) != nil || st.Status != "subscribed" {
		t.Errorf("first message %s, %v: want the status", b, err)
	}
	return st
}

type envelope struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	Binary bool   `json:"binary"`
	Data   string `json:"data"`
}

// decodeEnvelope parses a prepared envelope frame back.
func decodeEnvelope(t testing.TB, pm *PreparedMessage) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(pm.data, &e); err != nil {
		t.Fatalf("envelope %q is not JSON: %v", pm.data, err)
	}
	return e
}

func FuzzEnvelope(f *testing.F) {
	for _, s := range []string{"", "plain", `"quoted" \ back`, "line\nbreak\t\x00\x1f", "héllo ✓ 🎉", "\u2028\u2029", string([]byte{0xff, 0xfe})} {
		f.Add([]byte(s), "5f0c2a9d31e4", uint64(42))
	}
	f.Fuzz(func(t *testing.T, data []byte, epoch string, offset uint64) {
		if !utf8.ValidString(epoch) {
			return
		}
		isText := utf8.Valid(data)
		pm := newPositioned("c", Position{offset, epoch}, data, isText, true)
		defer pm.Release()
		e := decodeEnvelope(t, pm)
		got := []byte(e.Data)
		if e.Binary {
			var err error
			if got, err = base64.StdEncoding.DecodeString(e.Data); err != nil {
				t.Fatalf("binary data is not base64: %v", err)
			}
		}
		if e.Offset != offset || e.Epoch != epoch || e.Binary == isText || !bytes.Equal(got, data) {
			t.Fatalf("envelope %q decodes to %+v; want offset %d epoch %q data %q", pm.data, e, offset, epoch, data)
		}
	})
}

func TestSubscribeWithoutHistory(t *testing.T) {
	opened := make(chan *Conn, 1)
	ts := startServer(t, Options{}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
	})
	dial(t, ts.url(), nil)
	ws := <-opened
	rec, err := ts.SubscribeWith(ws, "c", SubscribeOptions{Since: &Position{}})
	if !errors.Is(err, ErrNoHistory) || rec.Recovered || ts.Subscribers("c") != 1 {
		t.Fatalf("SubscribeWith(Since) without history = %+v, %v, %d subscribers; want subscribed, not recovered, ErrNoHistory", rec, err, ts.Subscribers("c"))
	}
	if pos, err := ts.PublishPosition("c", []byte("x"), true); err != nil || pos != (Position{}) {
		t.Fatalf("PublishPosition without history = %+v, %v; want the zero Position", pos, err)
	}
}

// TestRecoveryNoGapNoDuplicate: subscribers that come back with a position
// while a publisher keeps publishing get every later message exactly once,
// in order, the missed ones from the history and the rest live.
func TestRecoveryNoGapNoDuplicate(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.HistorySize = 10000
			opts.MaxBackpressure = 64 << 20
			opened := make(chan *Conn, 16)
			ts := startServer(t, opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
			})
			const total = 3000
			positions := make(chan Position, total)
			published := make(chan struct{})
			go func() {
				defer close(published)
				for i := 1; i <= total; i++ {
					pos, err := ts.PublishPosition("c", fmt.Appendf(nil, "%d", i), true)
					if err != nil {
						t.Errorf("publish %d: %v", i, err)
						return
					}
					positions <- pos
					if i%100 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			var wg sync.WaitGroup
			for k := range 6 {
				// Come back from some position already published.
				var since Position
				for range 400 { // 6 × 400 of the 3000
					since = <-positions
				}
				c, _ := dial(t, ts.url(), nil)
				ws := <-opened
				rec, err := ts.SubscribeWith(ws, "c", SubscribeOptions{Envelope: true, Since: &since})
				if err != nil || !rec.Recovered {
					t.Fatalf("subscriber %d from %+v: %+v, %v", k, since, rec, err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if st := readStatus(t, ctx, c); !st.Recovered || st.Epoch != since.Epoch || st.Offset < since.Offset {
						t.Errorf("subscriber %d: status %+v", k, st)
						return
					}
					for want := since.Offset + 1; want <= total; want++ {
						_, b, err := c.Read(ctx)
						if err != nil {
							t.Errorf("subscriber %d waiting for %d: %v", k, want, err)
							return
						}
						var e envelope
						if err := json.Unmarshal(b, &e); err != nil || e.Offset != want || e.Epoch != since.Epoch || e.Data != fmt.Sprint(want) {
							t.Errorf("subscriber %d: got %s, want offset %d (a gap or a duplicate)", k, b, want)
							return
						}
					}
				}()
			}
			<-published
			wg.Wait()
		})
	}
}

func TestRecoveryRefused(t *testing.T) {
	opened := make(chan *Conn, 4)
	ts := startServer(t, Options{HistorySize: 3}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
	})
	var last Position
	for i := range 5 {
		last, _ = ts.PublishPosition("c", fmt.Appendf(nil, "%d", i+1), false)
	}
	tests := []struct {
		name  string
		since Position
	}{
		{"another epoch", Position{4, "stale"}},
		{"older than what is kept", Position{1, last.Epoch}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dial(t, ts.url(), nil)
			ws := <-opened
			rec, err := ts.SubscribeWith(ws, "c", SubscribeOptions{Envelope: true, Since: &tc.since})
			if err != nil || rec.Recovered || rec.Replayed != 0 || rec.Top != last {
				t.Fatalf("SubscribeWith(%+v) = %+v, %v; want not recovered, nothing replayed, top %+v", tc.since, rec, err, last)
			}
			// Live messages still come, in the envelope, binary as base64.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if st := readStatus(t, ctx, c); st.Recovered || st.Replayed != 0 || st.Offset != last.Offset {
				t.Fatalf("status %+v, want not recovered at offset %d", st, last.Offset)
			}
			last, _ = ts.PublishPosition("c", []byte{0xff, 0x00}, false)
			_, b, err := c.Read(ctx)
			var e envelope
			if err != nil || json.Unmarshal(b, &e) != nil || !e.Binary || e.Data != "/wA=" || e.Offset != last.Offset {
				t.Fatalf("live message after a refused recovery: %s, %v", b, err)
			}
		})
	}
}
