package worker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsd-server/wsd/internal/ratelog"
)

// downEngine is a pub/sub engine whose every publish fails, as Redis's do
// while it is down.
type downEngine struct{}

var errEngineDown = errors.New("engine down")

func (downEngine) Start(func(string, []byte, bool)) error { return nil }
func (downEngine) Publish(string, []byte, bool) error     { return errEngineDown }
func (downEngine) Subscribe(string) error                 { return nil }
func (downEngine) Unsubscribe(string) error               { return nil }
func (downEngine) Close() error                           { return nil }

// TestRepeatedErrorsLogBounded publishes through an engine that is down,
// over POST /publish and over /pubsub, many times: every publisher hears
// of the failure, and the log gets at most one line a second of each kind.
func TestRepeatedErrorsLogBounded(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	addr := servedWorker(t, testConfig(), Options{Logger: log, Engine: downEngine{}})
	client := httpClient(t)
	start := time.Now()

	const posts, sockets = 400, 40
	for i := range posts {
		resp, err := client.Post("http://"+addr+"/publish/lobby", "text/plain", strings.NewReader(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("POST /publish with the engine down: %d, want 503", resp.StatusCode)
		}
	}
	for range sockets {
		c, _ := wsDial(t, "ws://"+addr+"/pubsub/lobby", nil)
		writeMsg(t, c, websocket.MessageText, []byte("lost"))
		if code := closeStatus(t, c); code != websocket.StatusTryAgainLater {
			t.Fatalf("a /pubsub publisher with the engine down was closed with %d, want 1013", code)
		}
	}
	// Upgrades refused for a bad version: a debug line each, bounded too.
	for range sockets {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\nConnection: close\r\n\r\n")
		io.Copy(io.Discard, nc)
		nc.Close()
	}
	elapsed := time.Since(start)

	perMsg := map[string]int{}
	for _, l := range logs.lines(t) {
		perMsg[l["msg"].(string)]++
	}
	t.Logf("in %s: %v", elapsed.Round(time.Millisecond), perMsg)
	bound := int(elapsed/time.Second) + 2
	for _, msg := range []string{"pub/sub: POST /publish failed", "pub/sub: publish failed", "upgrade refused"} {
		if n := perMsg[msg]; n < 1 || n > bound {
			t.Errorf("%d lines %q for %d failures in %s, want 1 to %d", n, msg, sockets, elapsed.Round(time.Millisecond), bound)
		}
	}
}

// TestFasthttpLoggerBounded checks that fasthttp's own lines, some of which
// come once per connection, pass at most once a second per format.
func TestFasthttpLoggerBounded(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := fasthttpLogger{log, ratelog.New(log, time.Hour)}
	for i := range 1000 {
		f.Printf("error when serving connection %q<->%q: %v", "a", "b", i)
		f.Printf("cannot open file %q: %v", "x", i)
	}
	if got := len(logs.lines(t)); got != 2 {
		t.Errorf("%d lines for 2000 calls of 2 formats, want 2", got)
	}
}
