package wsext

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"
)

// modes are the two ways a connection can be served; every behaviour test
// runs under both.
var modes = []struct {
	name string
	opts Options
}{
	{"poller", Options{}},
	{"goroutine", Options{GoroutinePerConn: true}},
}

// testServer is a real fasthttp server on 127.0.0.1 upgrading every
// request at / with the settings its test gives.
type testServer struct {
	*Server
	addr     string
	settings func(ctx *fasthttp.RequestCtx) Settings
	http     *fasthttp.Server
}

func startServer(t *testing.T, opts Options, settings func(ctx *fasthttp.RequestCtx) Settings) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: NewServer(opts), addr: ln.Addr().String(), settings: settings}
	ts.http = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ts.Upgrade(ctx, ts.settings(ctx))
	}}
	go ts.http.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.http.Shutdown()
		ts.Shutdown(ctx)
	})
	return ts
}

func (ts *testServer) url() string { return "ws://" + ts.addr + "/" }

func dial(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

func echoSettings(*fasthttp.RequestCtx) Settings {
	return Settings{OnMessage: func(ws *Conn, data []byte, isText bool) { ws.Write(data, isText) }}
}

// closeCode reads until the connection ends and returns the close code the
// server sent.
func closeCode(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// rawConn is a hand-driven client for frames no well-behaved library sends.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, addr string, extraHeaders string) *rawConn {
	t.Helper()
	return rawDialBuffer(t, addr, extraHeaders, 0)
}

// rawDialBuffer is rawDial with the socket's receive buffer fixed at
// rcvbuf bytes before connecting (0 leaves the kernel's autotuning, which
// on loopback may take megabytes before the server's queue sees a byte).
func rawDialBuffer(t *testing.T, addr string, extraHeaders string, rcvbuf int) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return serr
		}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	var key [16]byte
	rand.Read(key[:])
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
		addr, base64.StdEncoding.EncodeToString(key[:]), extraHeaders)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	return &rawConn{nc, br}
}

// writeFrame sends one masked client frame.
func (rc *rawConn) writeFrame(t *testing.T, fin bool, op byte, payload []byte) {
	t.Helper()
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var hdr []byte
	switch n := len(payload); {
	case n <= 125:
		hdr = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		hdr = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		hdr = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	masked := make([]byte, len(payload))
	for i := range payload {
		masked[i] = payload[i] ^ key[i&3]
	}
	frame := append(append(hdr, key[:]...), masked...)
	if _, err := rc.Write(frame); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

// readFrame reads one server frame.
func (rc *rawConn) readFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint64(b[:]))
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(rc.br, payload)
	return h[0] & 0x0f, payload, err
}

// readClose reads frames until a close frame and returns its code.
func (rc *rawConn) readClose(t *testing.T) int {
	t.Helper()
	for {
		op, p, err := rc.readFrame()
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if op == opClose {
			if len(p) < 2 {
				return CloseNoStatus
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
