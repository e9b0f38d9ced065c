package baseline

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestHTTP(t *testing.T) {
	addr := serve(t)
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "Hello World!"},
		{"HEAD", "/", 200, ""},
		{"POST", "/", 405, "Method Not Allowed"},
		{"GET", "/nope", 404, "Not Found"},
		{"GET", "/broadcast", 400, ""},
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, "http://"+addr+tt.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || (tt.body != "" && string(b) != tt.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, b, tt.status, tt.body)
		}
	}
}

func dial(t *testing.T, url string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func TestEcho(t *testing.T) {
	c := dial(t, "ws://"+serve(t)+"/")
	for _, m := range []struct {
		op   ws.OpCode
		data string
	}{{ws.OpText, "héllo"}, {ws.OpBinary, "\x00\x01"}, {ws.OpText, strings.Repeat("x", 70000)}} {
		if err := wsutil.WriteClientMessage(c, m.op, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
		got, op, err := wsutil.ReadServerData(c)
		if err != nil || op != m.op || string(got) != m.data {
			t.Fatalf("echo of %d bytes (op %d) = %d bytes op %d, %v", len(m.data), m.op, len(got), op, err)
		}
	}
}

func TestBroadcast(t *testing.T) {
	addr := serve(t)
	a := dial(t, "ws://"+addr+"/broadcast")
	b := dial(t, "ws://"+addr+"/broadcast")
	c := dial(t, "ws://"+addr+"/broadcast")
	// Registration happens after the handshake; resend until both see it.
	deadline := time.Now().Add(5 * time.Second)
	for _, r := range []net.Conn{b, c} {
		for {
			if err := wsutil.WriteClientMessage(a, ws.OpText, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			got, _, err := wsutil.ReadServerData(r)
			if err == nil {
				if string(got) != "hi" {
					t.Fatalf("got %q", got)
				}
				break
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || time.Now().After(deadline) {
				t.Fatalf("receiver: %v", err)
			}
		}
	}
	// The sender does not get its own message.
	a.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if got, _, err := wsutil.ReadServerData(a); err == nil {
		t.Errorf("sender received %q", got)
	}
}
