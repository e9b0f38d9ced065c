//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestDeflateReceivers: with --compression, receivers that negotiate
// permessage-deflate (with and without context takeover) and plain ones
// join /broadcast and /pubsub/deflate, and a compressing sender sends 180
// messages on each: multibyte UTF-8 text, incompressible and compressible
// binary, from 257 bytes to 100 kB. Every receiver must get every message,
// byte for byte, in order.
func TestDeflateReceivers(t *testing.T) {
	s := begin(t, daemonOpts{args: []string{"--compression"}}, probeOpts{})
	for _, path := range []string{"/broadcast", "/pubsub/deflate"} {
		start := time.Now()
		n, verified, bytes, ext := deflateRound(t, s.d.addr, path, 180)
		s.r.notef("%s: %d receivers, %d of 180 messages verified by all, %.1f MB verified in all, in %s; negotiated %q",
			path, n, verified, float64(bytes)/MB, time.Since(start).Round(time.Millisecond), ext)
	}
	s.endAttack(0)
	s.finish(true)
}

// deflateRound runs one sender and its receivers on path and fails the test
// on any difference. It returns the number of receivers, the messages all
// of them verified, the bytes they verified, and an extension response the
// server gave.
func deflateRound(t *testing.T, addr, path string, count int) (int, int64, int64, string) {
	t.Helper()
	modes := []websocket.CompressionMode{
		websocket.CompressionContextTakeover, websocket.CompressionContextTakeover,
		websocket.CompressionContextTakeover, websocket.CompressionContextTakeover,
		websocket.CompressionNoContextTakeover, websocket.CompressionNoContextTakeover,
		websocket.CompressionNoContextTakeover, websocket.CompressionNoContextTakeover,
		websocket.CompressionDisabled, websocket.CompressionDisabled,
	}
	var ext string
	dial := func(mode websocket.CompressionMode) *websocket.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws://"+addr+path, &websocket.DialOptions{
			HTTPClient:      &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
			CompressionMode: mode,
		})
		if err != nil {
			t.Fatalf("dial %s (compression mode %d): %v", path, mode, err)
		}
		t.Cleanup(func() { c.CloseNow() })
		got := resp.Header.Get("Sec-WebSocket-Extensions")
		if mode != websocket.CompressionDisabled && !strings.Contains(got, "permessage-deflate") {
			t.Fatalf("%s: offered permessage-deflate (mode %d), the server answered %q", path, mode, got)
		}
		if got != "" {
			ext = got
		}
		c.SetReadLimit(1 << 20)
		return c
	}
	type receiver struct {
		c        *websocket.Conn
		synced   atomic.Bool
		progress atomic.Int64 // messages verified
		bytes    atomic.Int64
	}
	var rs []*receiver
	for _, m := range modes {
		rs = append(rs, &receiver{c: dial(m)})
	}
	sender := dial(websocket.CompressionContextTakeover)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			for k := 1; k <= count; {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				typ, got, err := r.c.Read(ctx)
				cancel()
				if err != nil {
					t.Errorf("%s receiver %d (mode %d), waiting for message %d: %v", path, i, modes[i], k, err)
					failed.Store(true)
					return
				}
				if typ == websocket.MessageText && string(got) == "sync" && k == 1 {
					r.synced.Store(true)
					continue
				}
				wantType, want := deflateMessage(k)
				if typ != wantType || !bytes.Equal(got, want) {
					t.Errorf("%s receiver %d (mode %d), message %d: %s", path, i, modes[i], k, diff(typ, got, wantType, want))
					failed.Store(true)
					return
				}
				r.bytes.Add(int64(len(got)))
				r.progress.Add(1)
				k++
			}
		})
	}
	write := func(typ websocket.MessageType, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sender.Write(ctx, typ, b); err != nil {
			t.Fatalf("%s sender: %v", path, err)
		}
	}
	minProgress := func() int64 {
		m := int64(count)
		for _, r := range rs {
			m = min(m, r.progress.Load())
		}
		return m
	}
	// Subscriptions take a moment: "sync" until every receiver heard it.
	if _, ok := eventually(10*time.Second, func() bool {
		write(websocket.MessageText, []byte("sync"))
		for _, r := range rs {
			if !r.synced.Load() {
				return false
			}
		}
		return true
	}); !ok {
		t.Fatalf("%s: not every receiver heard the sender within 10 s", path)
	}
	// At most 8 messages ahead of the slowest receiver: this is about
	// bytes, not about backpressure.
	for k := 1; k <= count && !failed.Load(); k++ {
		if _, ok := eventually(10*time.Second, func() bool { return failed.Load() || minProgress() >= int64(k-8) }); !ok {
			t.Fatalf("%s: the receivers are stuck at message %d", path, minProgress())
		}
		write(deflateMessage(k))
	}
	wg.Wait()
	sender.Close(websocket.StatusNormalClosure, "")
	var total int64
	for _, r := range rs {
		total += r.bytes.Load()
		r.c.Close(websocket.StatusNormalClosure, "")
	}
	return len(rs), minProgress(), total, ext
}

// deflateMessage returns message k of a deflate round: by k, multibyte
// UTF-8 text, incompressible binary or compressible binary, of one of
// several sizes over the server's 256-byte compression threshold.
func deflateMessage(k int) (websocket.MessageType, []byte) {
	sizes := []int{257, 300, 777, 1500, 4096, 10000, 33333, 65536, 100000}
	size := sizes[k%len(sizes)]
	var b []byte
	switch k % 3 {
	case 0:
		phrases := []string{"héllo wörld ", "日本語のテキスト ", "emoji 🎉🚀✓ ", "Ελληνικά κείμενα ", "plain ascii words ", "ünïcödé ", "𝄞 music "}
		b = fmt.Appendf(nil, "message %d: ", k)
		for i := 0; len(b) < size; i++ {
			b = append(b, phrases[(k+i*i)%len(phrases)]...)
		}
		return websocket.MessageText, b
	case 1:
		rng := rand.New(rand.NewPCG(uint64(k), 0x5eed))
		b = make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	case 2:
		b = make([]byte, size)
		for i := range b {
			b[i] = byte(i%61) ^ byte(k)
		}
	}
	return websocket.MessageBinary, b
}

// diff describes how a received message differs from the expected one.
func diff(typ websocket.MessageType, got []byte, wantType websocket.MessageType, want []byte) string {
	if typ != wantType {
		return fmt.Sprintf("a %v message of %d bytes, want %v of %d", typ, len(got), wantType, len(want))
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d bytes, want %d; first difference at byte %d: got % x…, want % x…",
		len(got), len(want), i, got[i:min(i+12, len(got))], want[i:min(i+12, len(want))])
}
