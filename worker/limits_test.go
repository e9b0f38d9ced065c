package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/wsext"
)

// rawSend sends request (a whole request, or its beginning) on a new
// connection and returns the connection and a reader over it.
func rawSend(t testing.TB, addr, request string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(nc, request); err != nil {
		t.Fatal(err)
	}
	return nc, bufio.NewReader(nc)
}

func readResponse(t testing.TB, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// waitClosed reads until the server ends the connection and returns how
// long that took.
func waitClosed(t testing.TB, nc net.Conn, br io.Reader) time.Duration {
	t.Helper()
	start := time.Now()
	nc.SetReadDeadline(start.Add(10 * time.Second))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server did not close the connection")
	}
	return time.Since(start)
}

func TestHeaderSizeLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxHeaderSize = 2048
	s := serve(t, cfg)
	for _, tt := range []struct {
		name   string
		value  int
		status int
	}{
		{"under the limit", 1500, 200},
		{"over the limit", 3000, 431},
		{"far over the limit", 64 << 10, 431},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc, br := rawSend(t, s.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", tt.value)+"\r\n\r\n")
			resp, body := readResponse(t, br)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tt.status)
			}
			if tt.status == 431 {
				if !resp.Close {
					t.Error("a 431 without Connection: close")
				}
				if resp.Header.Get("Wsd-Worker") == "" {
					t.Error("a 431 without Wsd-Worker")
				}
				waitClosed(t, nc, br)
			}
		})
	}
	t.Run("many small headers", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
		for i := range 300 {
			fmt.Fprintf(&b, "X-H%d: v\r\n", i)
		}
		b.WriteString("\r\n")
		_, br := rawSend(t, s.addr, b.String())
		if resp, _ := readResponse(t, br); resp.StatusCode != 431 {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
	})
}

func TestHeaderTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.HeaderTimeout = time.Second
	cfg.IdleTimeout = 10 * time.Second
	s := serve(t, cfg)

	t.Run("slowloris", func(t *testing.T) {
		// One header byte every 100 ms: the connection is busy, yet the
		// request never completes.
		nc, br := rawSend(t, s.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := nc.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
		start := time.Now()
		resp, _ := readResponse(t, br)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", resp.StatusCode)
		}
		waitClosed(t, nc, br)
		if d := time.Since(start); d < 500*time.Millisecond || d > 5*time.Second {
			t.Errorf("cut after %s, want about the 1s header timeout", d)
		}
	})
	t.Run("silent", func(t *testing.T) {
		nc, br := rawSend(t, s.addr, "")
		if d := waitClosed(t, nc, br); d < 500*time.Millisecond || d > 5*time.Second {
			t.Errorf("cut after %s, want about the 1s header timeout", d)
		}
	})
	// The connections are released, not parked on a goroutine.
	waitUntil(t, "no connection left", 5*time.Second, func() bool { return s.limit.Open() == 0 })
	if n := s.http.GetOpenConnectionsCount(); n != 0 {
		t.Errorf("fasthttp still serves %d connections", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = time.Second
	s := serve(t, cfg)
	nc, br := rawSend(t, s.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := readResponse(t, br); resp.StatusCode != 200 || body != "Hello World!" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if d := waitClosed(t, nc, br); d < 500*time.Millisecond || d > 5*time.Second {
		t.Errorf("idle keep-alive connection closed after %s, want about 1s", d)
	}
}

// TestWebSocketOutlivesHTTPTimeouts checks that the HTTP timeouts end with
// the upgrade: a quiet WebSocket is the ping timeout's business.
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	cfg := testConfig()
	cfg.HeaderTimeout = 500 * time.Millisecond
	cfg.IdleTimeout = 500 * time.Millisecond
	cfg.Timeout = 0
	s := serve(t, cfg)
	c, _ := wsDial(t, s.url("ws", "/"), nil)
	time.Sleep(2 * time.Second)
	writeMsg(t, c, websocket.MessageText, []byte("still here"))
	if _, data := readMsg(t, c); string(data) != "still here" {
		t.Fatalf("echo %q", data)
	}
}

func TestBodyLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBodySize = 1024
	s := serve(t, cfg)
	client := httpClient(t)
	for _, tt := range []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{"under the limit", 1000, false, 405},
		{"over the limit", 2000, false, 413},
		{"far over the limit", 1 << 20, false, 413},
		{"chunked over the limit", 4000, true, 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(make([]byte, tt.size))
			if tt.chunked {
				body = io.MultiReader(body) // hides the length
			}
			resp, err := client.Post(s.url("http", "/"), "application/octet-stream", body)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 413 && !resp.Close {
				t.Error("a 413 without Connection: close")
			}
		})
	}
}

// dialRefused dials a WebSocket that the worker must refuse for a limit.
func dialRefused(t *testing.T, url, wantBody string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil {
		c.CloseNow()
		t.Fatal("a connection over the limit was upgraded")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial over the limit: %v, response %+v; want 503", err, resp)
	}
	if !resp.Close || resp.Header.Get("Wsd-Worker") == "" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 headers %v: want Connection: close, Wsd-Worker and Retry-After", resp.Header)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), wantBody) {
		t.Errorf("503 body %q, want it to say %q", body, wantBody)
	}
}

func TestMaxConns(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConns = 3
	s := serve(t, cfg)

	// Two WebSockets and one keep-alive HTTP connection fill the worker.
	ws1, _ := wsDial(t, s.url("ws", "/"), nil)
	ws2, _ := wsDial(t, s.url("ws", "/broadcast"), nil)
	_, br := rawSend(t, s.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readResponse(t, br); resp.StatusCode != 200 {
		t.Fatalf("third connection: %d", resp.StatusCode)
	}
	waitUntil(t, "3 connections held", 5*time.Second, func() bool { return s.limit.Open() == 3 })

	t.Run("HTTP over the limit", func(t *testing.T) {
		nc, br := rawSend(t, s.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := readResponse(t, br)
		if resp.StatusCode != 503 || !resp.Close || !strings.Contains(body, "too many connections") {
			t.Fatalf("got %d close=%v %q; want 503 with Connection: close", resp.StatusCode, resp.Close, body)
		}
		waitClosed(t, nc, br)
	})
	t.Run("WebSocket over the limit", func(t *testing.T) {
		dialRefused(t, s.url("ws", "/"), "too many connections")
	})
	t.Run("a WebSocket that ends frees its slot", func(t *testing.T) {
		ws1.Close(websocket.StatusNormalClosure, "")
		waitUntil(t, "the slot to be freed", 5*time.Second, func() bool { return s.limit.Open() == 2 })
		c, _ := wsDial(t, s.url("ws", "/"), nil)
		writeMsg(t, c, websocket.MessageText, []byte("in"))
		readMsg(t, c)
		dialRefused(t, s.url("ws", "/"), "too many connections")
		c.Close(websocket.StatusNormalClosure, "")
	})
	ws2.Close(websocket.StatusNormalClosure, "")
	if s.limit.Refused() != 3 {
		t.Errorf("Refused() = %d, want 3", s.limit.Refused())
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnsPerIP = 2
	s := serve(t, cfg)
	ws1, _ := wsDial(t, s.url("ws", "/"), nil)
	wsDial(t, s.url("ws", "/"), nil)
	dialRefused(t, s.url("ws", "/"), "too many connections from your address")
	_, br := rawSend(t, s.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readResponse(t, br); resp.StatusCode != 503 {
		t.Fatalf("HTTP over the per-IP limit: %d, want 503", resp.StatusCode)
	}
	ws1.Close(websocket.StatusNormalClosure, "")
	waitUntil(t, "the slot to be freed", 5*time.Second, func() bool { return s.limit.Open() == 1 })
	c, _ := wsDial(t, s.url("ws", "/"), nil)
	writeMsg(t, c, websocket.MessageBinary, []byte{1})
	readMsg(t, c)
}

// TestSlotsAreReturned checks every way a connection ends gives its slot
// back, so that the limit never fills with ghosts.
func TestSlotsAreReturned(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnsPerIP = 1000
	cfg.MaxMsgSize = 100
	s := serve(t, cfg)
	client := httpClient(t)
	// HTTP keep-alive, then closed by the client.
	resp, err := client.Get(s.url("http", "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	// A refused upgrade on a connection that then ends.
	nc, _, resp := handshake(t, s.addr, "/", "Origin: https://evil.example\r\n")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade from a foreign origin: %d, want 403", resp.StatusCode)
	}
	nc.Close()
	// WebSockets closed by the client, by the server for a protocol error,
	// and by the server for a message too big.
	c, _ := wsDial(t, s.url("ws", "/"), nil)
	c.Close(websocket.StatusNormalClosure, "")
	nc, _, _ = handshake(t, s.addr, "/", "")
	nc.Write([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked
	c, _ = wsDial(t, s.url("ws", "/"), nil)
	c.Write(context.Background(), websocket.MessageBinary, make([]byte, 200))
	if code := closeStatus(t, c); code != websocket.StatusMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}
	waitUntil(t, "every slot back", 10*time.Second, func() bool { return s.limit.Open() == 0 && s.WebSocket().Count() == 0 })
	s.limit.mu.Lock()
	left := len(s.limit.byIP)
	s.limit.mu.Unlock()
	if left != 0 {
		t.Errorf("%d addresses still counted", left)
	}
}

// TestPollerKeepsWebSockets checks the limit's connection wrapper lets
// wsext move WebSockets to its poller. The clients are raw sockets, which
// take no goroutine: a server goroutine per connection would show.
func TestPollerKeepsWebSockets(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnsPerIP = 1000
	s := serve(t, cfg)
	handshake(t, s.addr, "/", "") // starts the poller's goroutines
	waitUntil(t, "the first connection", 5*time.Second, func() bool { return s.WebSocket().Count() == 1 })
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	const n = 50
	for range n {
		if _, _, resp := handshake(t, s.addr, "/", ""); resp.StatusCode != 101 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	waitUntil(t, "every connection", 5*time.Second, func() bool { return s.WebSocket().Count() == n+1 })
	time.Sleep(100 * time.Millisecond)
	if extra := runtime.NumGoroutine() - before; extra > n/2 {
		t.Errorf("%d more goroutines for %d WebSockets: they are not on the poller", extra, n)
	}
}

func TestOrigin(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://example.com", "https://*.example.org", "http://localhost:8080"}
	s := serve(t, cfg)
	for _, tt := range []struct {
		origin string
		status int
	}{
		{"", 101}, // not a browser
		{"https://example.com", 101},
		{"HTTPS://EXAMPLE.COM", 101}, // scheme and host are case-insensitive
		{"http://example.com", 403},
		{"https://example.com:8443", 403},
		{"https://www.example.com", 403},
		{"https://a.example.org", 101},
		{"https://a.b.example.org", 101},
		{"https://example.org", 403},
		{"https://notexample.org", 403},
		{"https://example.org.evil.com", 403},
		{"http://a.example.org", 403},
		{"http://localhost:8080", 101},
		{"http://localhost", 403},
		{"null", 403},
		{"https://evil.com", 403},
	} {
		t.Run(tt.origin, func(t *testing.T) {
			extra := ""
			if tt.origin != "" {
				extra = "Origin: " + tt.origin + "\r\n"
			}
			_, _, resp := handshake(t, s.addr, "/", extra)
			if resp.StatusCode != tt.status {
				t.Fatalf("Origin %q: status %d, want %d", tt.origin, resp.StatusCode, tt.status)
			}
		})
	}

	t.Run("default is the same host", func(t *testing.T) {
		s := serve(t, testConfig())
		for origin, status := range map[string]int{
			"http://" + s.addr:       101,
			"https://evil.com":       403,
			"http://other.host":      403,
			"http://" + s.addr + "0": 403,
		} {
			_, _, resp := handshake(t, s.addr, "/", "Origin: "+origin+"\r\n")
			if resp.StatusCode != status {
				t.Errorf("Origin %q: status %d, want %d", origin, resp.StatusCode, status)
			}
		}
	})
	t.Run("any", func(t *testing.T) {
		cfg := testConfig()
		cfg.AllowedOrigins = []string{"*"}
		s := serve(t, cfg)
		if _, _, resp := handshake(t, s.addr, "/", "Origin: https://anything.example\r\n"); resp.StatusCode != 101 {
			t.Errorf("status %d, want 101", resp.StatusCode)
		}
	})
}

func TestSubprotocols(t *testing.T) {
	cfg := testConfig()
	cfg.Subprotocols = []string{"chat.v2", "chat"}
	s := serve(t, cfg)
	for _, tt := range []struct {
		offer, want string
	}{
		{"", ""},
		{"chat", "chat"},
		{"chat, chat.v2", "chat.v2"}, // the server's preference wins
		{"other", ""},
		{"other, chat", "chat"},
	} {
		t.Run(tt.offer, func(t *testing.T) {
			extra := ""
			if tt.offer != "" {
				extra = "Sec-WebSocket-Protocol: " + tt.offer + "\r\n"
			}
			_, _, resp := handshake(t, s.addr, "/", extra)
			if resp.StatusCode != 101 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.want {
				t.Errorf("offer %q: chose %q, want %q", tt.offer, got, tt.want)
			}
		})
	}
	t.Run("client library", func(t *testing.T) {
		c, _ := wsDial(t, s.url("ws", "/"), &websocket.DialOptions{Subprotocols: []string{"chat"}})
		if c.Subprotocol() != "chat" {
			t.Errorf("Subprotocol() = %q", c.Subprotocol())
		}
	})
	t.Run("none configured", func(t *testing.T) {
		s := serve(t, testConfig())
		_, _, resp := handshake(t, s.addr, "/", "Sec-WebSocket-Protocol: chat\r\n")
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); resp.StatusCode != 101 || got != "" {
			t.Errorf("status %d, protocol %q; want 101 and none", resp.StatusCode, got)
		}
	})
}

func TestDecompressedSizeLimit(t *testing.T) {
	cfg := testConfig()
	cfg.Compression = true
	cfg.MaxMsgSize = 4096
	s := serve(t, cfg)
	opts := &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover, CompressionThreshold: 1}
	c, resp := wsDial(t, s.url("ws", "/"), opts)
	if !strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		t.Fatalf("compression not negotiated: %q", resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	fits := bytes.Repeat([]byte("a"), 4096)
	writeMsg(t, c, websocket.MessageText, fits)
	if _, data := readMsg(t, c); !bytes.Equal(data, fits) {
		t.Fatal("echo of a compressed message at the limit differs")
	}
	// 1 MiB of zeros deflates to about a kilobyte: small on the wire, far
	// over the limit once inflated.
	writeMsg(t, c, websocket.MessageBinary, make([]byte, 1<<20))
	if code := closeStatus(t, c); code != websocket.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

func TestPingTimeoutClosesSilentPeer(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 1
	s := serve(t, cfg)
	nc, br, resp := handshake(t, s.addr, "/", "")
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitUntil(t, "the connection to open", 5*time.Second, func() bool { return s.WebSocket().Count() == 1 })
	start := time.Now()
	// A half-open peer: it never answers, not even the ping.
	sawPing := false
	for {
		op, _, err := readServerFrame(br)
		if err != nil {
			break
		}
		if op == 0x9 {
			sawPing = true
		}
	}
	if !sawPing {
		t.Error("no ping before the close")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("closed after %s, want within a few seconds of the 1s timeout", d)
	}
	waitUntil(t, "the connection to end", 5*time.Second, func() bool { return s.WebSocket().Count() == 0 && s.limit.Open() == 0 })
	nc.Close()
}

// readServerFrame reads one unmasked server frame.
func readServerFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int64(b[0])<<8 | int64(b[1])
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = 0
		for _, x := range b {
			n = n<<8 | int64(x)
		}
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(br, payload)
	return h[0] & 0x0f, payload, err
}

// smallBufferDialer makes connections whose receive buffer is tiny, so
// that a client that does not read fills up after a few kilobytes.
var smallBufferDialer = &net.Dialer{
	Timeout: 5 * time.Second,
	Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	},
}

// stuckClient upgrades at path and then never reads.
func stuckClient(t testing.TB, addr, path string) net.Conn {
	t.Helper()
	nc, err := smallBufferDialer.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Read the 101 byte by byte, so that nothing after it is taken.
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := nc.Read(b); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		head = append(head, b[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		t.Fatalf("handshake: %q", head)
	}
	return nc
}

// TestBackpressureBroadcast is the scenario through the worker: a
// /broadcast client that never reads is cut off once more than
// max-backpressure bytes wait for it, and everyone else keeps receiving.
// The sender waits for every reader to get each message, so that the
// readers are never the slow ones.
func TestBackpressureBroadcast(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBackpressure = 256 << 10
	s := serve(t, cfg)
	stuck := stuckClient(t, s.addr, "/broadcast")
	sender, _ := wsDial(t, s.url("ws", "/broadcast"), nil)
	// Enough to fill the kernel's buffers (4 MiB on Linux) and then the
	// allowance.
	const readers, msgs, size = 8, 160, 64 << 10
	var rs []*websocket.Conn
	for range readers {
		c, _ := wsDial(t, s.url("ws", "/broadcast"), nil)
		rs = append(rs, c)
	}
	waitUntil(t, "every client", 5*time.Second, func() bool { return s.WebSocket().Count() == readers+2 })

	got := make(chan error, readers*msgs)
	for i, c := range rs {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for j := range msgs {
				_, data, err := c.Read(ctx)
				switch {
				case err != nil:
					err = fmt.Errorf("reader %d, message %d: %w", i, j, err)
				case len(data) != size || data[0] != byte(j):
					err = fmt.Errorf("reader %d, message %d: got %d bytes starting %d", i, j, len(data), data[0])
				}
				got <- err
				if err != nil {
					return
				}
			}
		}()
	}
	msg := make([]byte, size)
	for j := range msgs {
		msg[0] = byte(j)
		writeMsg(t, sender, websocket.MessageBinary, msg)
		for range readers {
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("message %d: a reader waited 10s", j)
			}
		}
	}
	waitUntil(t, "the stuck client to be cut off", 10*time.Second, func() bool {
		return s.WebSocket().Count() == readers+1 && s.WebSocket().Stats().BackpressureCloses == 1
	})
	// What the stuck client finally reads ends, short of the whole
	// stream: the server dropped its queue and closed the connection.
	stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, stuck)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the stuck connection was not closed")
	}
	if n >= msgs*size {
		t.Errorf("the stuck client still received %d bytes", n)
	}
}

// TestBackpressureWriteNeverWaits drives wsext as the worker does, both on
// the poller and with a goroutine per connection: with one stuck client
// among many, Write returns ErrBackpressure at once and Each over every
// connection keeps its pace. Each round waits for the readers to drain the
// previous one, so that only the stuck client falls behind.
func TestBackpressureWriteNeverWaits(t *testing.T) {
	for _, mode := range []struct {
		name      string
		goroutine bool
	}{{"poller", false}, {"goroutine", true}} {
		t.Run(mode.name, func(t *testing.T) {
			srv := wsext.NewServer(wsext.Options{MaxBackpressure: 256 << 10, GoroutinePerConn: mode.goroutine, Logger: quiet})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			hs := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { srv.Upgrade(ctx, wsext.Settings{}) }}
			go hs.Serve(ln)
			t.Cleanup(func() {
				hs.Shutdown()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			})
			addr := ln.Addr().String()
			stuck := stuckClient(t, addr, "/")
			const n = 20
			var drained atomic.Int64
			for range n - 1 {
				nc, br, resp := handshake(t, addr, "/", "")
				if resp.StatusCode != 101 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				nc.SetDeadline(time.Time{})
				go io.Copy(countingWriter{&drained}, br)
			}
			waitUntil(t, "every connection", 5*time.Second, func() bool { return srv.Count() == n })

			var (
				mu        sync.Mutex
				slowest   time.Duration
				errsSeen  = map[string]int{}
				stuckAddr = stuck.LocalAddr().String()
			)
			msg := make([]byte, 64<<10)
			frame := int64(len(msg) + 10)
			task := func(ws *wsext.Conn, _ any) {
				start := time.Now()
				err := ws.Write(msg, false)
				d := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				slowest = max(slowest, d)
				if err != nil {
					who := "other"
					if ws.RemoteAddr().String() == stuckAddr {
						who = "stuck"
					}
					errsSeen[who+": "+errorName(err)]++
				}
			}
			stuckFailed := func() bool {
				mu.Lock()
				defer mu.Unlock()
				return errsSeen["stuck: ErrBackpressure"] > 0
			}
			// The kernel takes about 4 MiB before the queue starts.
			const maxRounds = 300
			start := time.Now()
			done := make(chan struct{}, 1)
			rounds := 0
			for rounds < maxRounds && !stuckFailed() {
				rounds++
				srv.Each(nil, task, nil, func(*wsext.Conn, any) { done <- struct{}{} })
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("Each round %d did not finish", rounds)
				}
				waitUntil(t, "the readers to drain", 10*time.Second, func() bool {
					return drained.Load() >= int64(rounds)*int64(n-1)*frame
				})
			}
			elapsed := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d rounds of Each over %d connections in %s; slowest Write %s; errors %v", rounds, n, elapsed, slowest, errsSeen)
			if errsSeen["stuck: ErrBackpressure"] != 1 {
				t.Errorf("the stuck connection's errors: %v, want one ErrBackpressure", errsSeen)
			}
			if errsSeen["other: ErrBackpressure"]+errsSeen["other: ErrClosed"]+errsSeen["other: other"] > 0 {
				t.Errorf("connections that read got errors: %v", errsSeen)
			}
			if slowest > time.Second {
				t.Errorf("a Write took %s: Write must never wait for the peer", slowest)
			}
			waitUntil(t, "the stuck connection to be closed", 10*time.Second, func() bool {
				return srv.Count() == n-1 && srv.Stats().BackpressureCloses == 1
			})
		})
	}
}

// countingWriter discards what it is given and counts it.
type countingWriter struct{ n *atomic.Int64 }

func (w countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

func errorName(err error) string {
	switch {
	case errors.Is(err, wsext.ErrBackpressure):
		return "ErrBackpressure"
	case errors.Is(err, wsext.ErrClosed):
		return "ErrClosed"
	}
	return "other"
}
