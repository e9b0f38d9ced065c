package worker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsd-server/wsd/config"
)

// serving is a worker serving on 127.0.0.1 for one test.
type serving struct {
	*Worker
	addr string
}

// testConfig is the default configuration on a free port of 127.0.0.1.
func testConfig() config.Config {
	cfg := config.Default()
	cfg.Address = "127.0.0.1"
	cfg.Port = 0
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

var quiet = slog.New(slog.DiscardHandler)

// serve starts a worker for cfg and stops it when the test ends.
func serve(t testing.TB, cfg config.Config) *serving {
	t.Helper()
	return serveOpts(t, cfg, Options{})
}

// serveOpts starts a worker for cfg with opts and stops it when the test
// ends.
func serveOpts(t testing.TB, cfg config.Config, opts Options) *serving {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	w, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return &serving{Worker: w, addr: ln.Addr().String()}
}

func (s *serving) url(scheme, path string) string { return scheme + "://" + s.addr + path }

// httpClient is a client of its own per test, so that keep-alive
// connections of one test never reach another's server.
func httpClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// wsDial opens a WebSocket and closes it when the test ends.
func wsDial(t testing.TB, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// readMsg reads one message within a bounded time.
func readMsg(t testing.TB, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, data
}

func writeMsg(t testing.TB, c *websocket.Conn, typ websocket.MessageType, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// closeStatus reads until the connection ends and returns the server's
// close code (-1 when it sent none).
func closeStatus(t testing.TB, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the server did not close the connection")
			}
			return websocket.CloseStatus(err)
		}
	}
}

// handshake sends a WebSocket upgrade for path with extra header lines
// ("Name: value\r\n" each) on a raw connection and returns the response.
func handshake(t testing.TB, addr, path, extra string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	var key [16]byte
	rand.Read(key[:])
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
		path, addr, base64.StdEncoding.EncodeToString(key[:]), extra)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return nc, br, resp
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHTTPRoutes(t *testing.T) {
	s := serve(t, testConfig())
	client := httpClient(t)
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		method, path string
		status       int
		body         string
		header       map[string]string
	}{
		{"GET", "/", 200, "Hello World!", map[string]string{"Content-Type": "text/plain; charset=utf-8"}},
		{"GET", "/?q=1", 200, "Hello World!", nil},
		{"HEAD", "/", 200, "", map[string]string{"Content-Length": "12"}},
		{"POST", "/", 405, "405 Method Not Allowed\n", map[string]string{"Allow": "GET, HEAD"}},
		{"DELETE", "/", 405, "405 Method Not Allowed\n", map[string]string{"Allow": "GET, HEAD"}},
		{"GET", "/nope", 404, "404 Not Found\n", nil},
		{"GET", "/broadcast", 400, "", nil}, // a WebSocket route asked without an upgrade
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, s.url("http", tt.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			if tt.body != "" && string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if got := resp.Header.Get("Wsd-Worker"); got != pid {
				t.Errorf("Wsd-Worker %q, want %q", got, pid)
			}
			for k, v := range tt.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestEcho(t *testing.T) {
	s := serve(t, testConfig())
	c, resp := wsDial(t, s.url("ws", "/"), nil)
	if got, want := resp.Header.Get("Wsd-Worker"), strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("101 Wsd-Worker %q, want %q", got, want)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB, under the 256 KiB default
	for _, m := range []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello")},
		{websocket.MessageBinary, []byte{0, 1, 2, 0xff}},
		{websocket.MessageText, []byte("héllo wörld ✓")},
		{websocket.MessageBinary, nil},
		{websocket.MessageBinary, big},
	} {
		writeMsg(t, c, m.typ, m.data)
		typ, data := readMsg(t, c)
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Fatalf("echo of %v %d bytes: got %v %d bytes", m.typ, len(m.data), typ, len(data))
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestConnectionsHeader(t *testing.T) {
	s := serve(t, testConfig())
	for want := range 3 {
		_, resp := wsDial(t, s.url("ws", "/"), nil)
		if got := resp.Header.Get("Wsd-Connections"); got != strconv.Itoa(want) {
			t.Fatalf("connection %d: Wsd-Connections %q, want %d", want+1, got, want)
		}
		waitUntil(t, "the connection to open", 5*time.Second, func() bool { return s.WebSocket().Count() == want+1 })
	}
}

func TestBroadcast(t *testing.T) {
	s := serve(t, testConfig())
	var cs [3]*websocket.Conn
	for i := range cs {
		cs[i], _ = wsDial(t, s.url("ws", "/broadcast"), nil)
	}
	waitUntil(t, "3 connections", 5*time.Second, func() bool { return s.WebSocket().Count() == 3 })

	const n = 50
	for i := range n {
		writeMsg(t, cs[0], websocket.MessageText, []byte("m"+strconv.Itoa(i)))
	}
	writeMsg(t, cs[0], websocket.MessageBinary, []byte{0xde, 0xad})
	for _, c := range cs[1:] {
		for i := range n {
			typ, data := readMsg(t, c)
			if want := "m" + strconv.Itoa(i); typ != websocket.MessageText || string(data) != want {
				t.Fatalf("message %d: got %v %q, want text %q", i, typ, data, want)
			}
		}
		if typ, data := readMsg(t, c); typ != websocket.MessageBinary || !bytes.Equal(data, []byte{0xde, 0xad}) {
			t.Fatalf("binary message: got %v %x", typ, data)
		}
	}
	// The sender got none of its own: the first message it reads is the
	// one another client sent afterwards.
	writeMsg(t, cs[1], websocket.MessageText, []byte("from 1"))
	if _, data := readMsg(t, cs[0]); string(data) != "from 1" {
		t.Fatalf("sender received %q, want only the other client's message", data)
	}
	if _, data := readMsg(t, cs[2]); string(data) != "from 1" {
		t.Fatalf("third client received %q, want %q", data, "from 1")
	}
}

// TestBroadcastIsolatedFromEcho checks that /broadcast reaches only
// /broadcast connections, not echo ones.
func TestBroadcastIsolatedFromEcho(t *testing.T) {
	s := serve(t, testConfig())
	echo, _ := wsDial(t, s.url("ws", "/"), nil)
	b1, _ := wsDial(t, s.url("ws", "/broadcast"), nil)
	b2, _ := wsDial(t, s.url("ws", "/broadcast"), nil)
	waitUntil(t, "3 connections", 5*time.Second, func() bool { return s.WebSocket().Count() == 3 })
	writeMsg(t, b1, websocket.MessageText, []byte("to broadcast"))
	if _, data := readMsg(t, b2); string(data) != "to broadcast" {
		t.Fatalf("got %q", data)
	}
	writeMsg(t, echo, websocket.MessageText, []byte("ping"))
	if _, data := readMsg(t, echo); string(data) != "ping" {
		t.Fatalf("echo connection received %q, want only its own echo", data)
	}
}

func TestRunGracefulStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, testConfig(), ln, Options{Logger: quiet, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before Ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Ready was not called")
	}
	var cs []*websocket.Conn
	for _, path := range []string{"/", "/", "/broadcast"} {
		c, _ := wsDial(t, "ws://"+addr+path, nil)
		cs = append(cs, c)
	}
	writeMsg(t, cs[0], websocket.MessageText, []byte("before"))
	readMsg(t, cs[0])

	cancel()
	for i, c := range cs {
		if code := closeStatus(t, c); code != websocket.StatusGoingAway {
			t.Errorf("client %d: close code %d, want 1001", i, code)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a clean stop: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts after Run returned")
	}
}

func TestRunFailsOnBadTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLSCert = "/nonexistent/cert.pem"
	cfg.TLSKey = "/nonexistent/key.pem"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), cfg, ln, Options{Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "tls-cert") {
		t.Fatalf("Run with a missing certificate = %v, want a tls-cert error", err)
	}
	var pe *os.PathError
	if !errors.As(err, &pe) {
		t.Errorf("error %v does not wrap the file error", err)
	}
}

// TestUpgradeDuringShutdown checks a handshake under way when the worker
// stops: it gets a real 101 and then a close 1001, like every other
// WebSocket, not a 101 that is no upgrade.
func TestUpgradeDuringShutdown(t *testing.T) {
	w, err := New(testConfig(), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go w.Serve(ln)
	nc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	// All of the handshake but its last line, so that it is under way
	// when the stop begins.
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	waitUntil(t, "the request to be read", 5*time.Second, func() bool { return w.http.GetOpenConnectionsCount() == 1 })
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- w.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // the stop has begun
	nc.Write([]byte("\r\n"))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Connection"), "Upgrade") {
		t.Fatalf("answer %d with Connection %q, want 101 with Connection: Upgrade", resp.StatusCode, resp.Header.Get("Connection"))
	}
	op, payload, err := readServerFrame(br)
	if err != nil || op != 0x8 || len(payload) < 2 || int(payload[0])<<8|int(payload[1]) != 1001 {
		t.Fatalf("after the 101: opcode %d payload %q (%v), want a close 1001", op, payload, err)
	}
	nc.Write([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9}) // the client's close, 1001
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
