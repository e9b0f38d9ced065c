package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gobwas/ws"
	"github.com/valyala/fasthttp"

	"github.com/wsd-server/wsd/bench/baseline"
)

// startServer serves handler on a free 127.0.0.1 port for the test's life
// and returns host:port.
func startServer(t *testing.T, handler fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// startBaseline runs the baseline server in this process.
func startBaseline(t *testing.T) (string, *baseline.Server) {
	s := baseline.New()
	return startServer(t, s.Handler), s
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEcho(t *testing.T) {
	addr, _ := startBaseline(t)
	tests := []struct {
		name  string
		conns int
		size  int
		depth int
		text  bool
	}{
		{"small", 4, 64, 1, false},
		{"text", 2, 100, 1, true},
		{"fragmented-pipelined", 2, 70000, 2, false},
		{"empty", 1, 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var counter atomic.Int64
			res, err := Echo(testContext(t), EchoOptions{
				URL: "ws://" + addr + "/", Conns: tt.conns, Size: tt.size, Depth: tt.depth, Text: tt.text,
				Duration: 300 * time.Millisecond, ServerPID: os.Getpid(), Counter: &counter,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Messages == 0 || res.Latency.Count() != uint64(res.Messages) || counter.Load() != res.Messages {
				t.Fatalf("messages %d, latency samples %d, counter %d", res.Messages, res.Latency.Count(), counter.Load())
			}
			if res.Bytes != res.Messages*int64(tt.size) || res.MsgPerSec() <= 0 {
				t.Errorf("bytes %d for %d messages of %d; %.0f msg/s", res.Bytes, res.Messages, tt.size, res.MsgPerSec())
			}
			if res.ServerCPU <= 0 || res.CPUPerMsg() <= 0 {
				t.Errorf("server CPU %v, per message %v", res.ServerCPU, res.CPUPerMsg())
			}
		})
	}
}

func TestEchoDetectsCorruption(t *testing.T) {
	var up websocket.FastHTTPUpgrader
	addr := startServer(t, func(ctx *fasthttp.RequestCtx) {
		up.Upgrade(ctx, func(c *websocket.Conn) {
			defer c.Close()
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				msg[len(msg)-1]++
				c.WriteMessage(mt, msg)
			}
		})
	})
	_, err := Echo(testContext(t), EchoOptions{URL: "ws://" + addr + "/", Size: 10, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "echo differs") {
		t.Fatalf("Echo against a corrupting server: %v", err)
	}
}

func TestBroadcast(t *testing.T) {
	addr, srv := startBaseline(t)
	var counter atomic.Int64
	res, err := Broadcast(testContext(t), BroadcastOptions{
		URL: "ws://" + addr + "/broadcast", Receivers: 5, Size: 64, Window: 4, Messages: 50,
		Duration: 10 * time.Second, ServerPID: os.Getpid(), Counter: &counter,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 50 || res.Deliveries != 250 || !res.Complete || res.Missing != 0 || counter.Load() != 250 {
		t.Fatalf("result %+v, counter %d", res, counter.Load())
	}
	if res.Elapsed >= 10*time.Second || res.DeliveriesPerSec() <= 0 || res.Latency.Count() != 250 {
		t.Errorf("elapsed %v, %.0f deliveries/s, %d latencies", res.Elapsed, res.DeliveriesPerSec(), res.Latency.Count())
	}
	waitFor(t, func() bool { return srv.Broadcasters() == 0 }, "broadcast connections to close")
}

// TestBroadcastStuck runs the stuck-receiver variant against the baseline,
// whose broadcast loop blocks on the receiver that never reads: the run
// must still end on time, with the reading receivers short of messages.
func TestBroadcastStuck(t *testing.T) {
	addr, _ := startBaseline(t)
	start := time.Now()
	res, err := Broadcast(testContext(t), BroadcastOptions{
		URL: "ws://" + addr + "/broadcast", Receivers: 2, Stuck: 1, Size: 64 << 10, Window: 8,
		Duration: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stuck run took %v", took)
	}
	if res.Elapsed != 1500*time.Millisecond || res.Sent == 0 {
		t.Errorf("result %+v: want the full duration used and some messages sent", res)
	}
	// The kernel absorbs a few MB for the stuck receiver (a 4 KiB receive
	// buffer and the server's send buffer); 1.5 s of 64 KiB messages is far
	// more, so the baseline must have stalled.
	if res.Complete || res.Missing == 0 || res.Deliveries > 2*res.Sent {
		t.Errorf("result %+v: the baseline did not stall on the stuck receiver", res)
	}
}

func TestIdle(t *testing.T) {
	addr, srv := startBaseline(t)
	var counter atomic.Int64
	res, err := Idle(testContext(t), IdleOptions{
		URL: "ws://" + addr + "/broadcast", Steps: []int{20, 50}, ServerPID: os.Getpid(),
		Settle: time.Second, Counter: &counter,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 2 || res.Points[0].Conns != 20 || res.Points[1].Conns != 50 || counter.Load() != 50 {
		t.Fatalf("points %+v, counter %d", res.Points, counter.Load())
	}
	if res.Base.RSS <= 0 || res.Points[1].RSS <= 0 || res.Base.Slab <= 0 {
		t.Errorf("base %+v, points %+v", res.Base, res.Points)
	}
	waitFor(t, func() bool { return srv.Broadcasters() == 0 }, "idle connections to close")

	if _, err := Idle(testContext(t), IdleOptions{URL: "ws://" + addr + "/", Steps: []int{5}}); err == nil {
		t.Error("Idle without a pid succeeded")
	}
	if _, err := Idle(testContext(t), IdleOptions{URL: "ws://" + addr + "/", Steps: []int{5, 2}, ServerPID: os.Getpid()}); err == nil {
		t.Error("Idle with descending steps succeeded")
	}
}

func TestIdleResultArithmetic(t *testing.T) {
	r := IdleResult{
		Base:   IdlePoint{RSS: 1000, Slab: 100},
		Points: []IdlePoint{{Conns: 10, RSS: 21000, Slab: 600}, {Conns: 20, RSS: 31000, Slab: 1100}},
	}
	if got := r.PerConn(0); got != 2000 {
		t.Errorf("PerConn(0) = %v", got)
	}
	if got := r.PerConn(1); got != 1500 {
		t.Errorf("PerConn(1) = %v", got)
	}
	if got := r.Slope(); got != 1000 {
		t.Errorf("Slope = %v", got)
	}
	if got := r.KernelPerConn(); got != 50 {
		t.Errorf("KernelPerConn = %v", got)
	}
	r.Points = r.Points[:1]
	if got := r.Slope(); got != 2000 {
		t.Errorf("single-point Slope = %v", got)
	}
}

func TestHTTP(t *testing.T) {
	addr, _ := startBaseline(t)
	var counter atomic.Int64
	res, err := HTTP(testContext(t), HTTPOptions{
		URL: "http://" + addr + "/", Conns: 4, Duration: 300 * time.Millisecond, Expect: "Hello World!",
		ServerPID: os.Getpid(), Counter: &counter,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || counter.Load() != res.Requests || res.Latency.Count() != uint64(res.Requests) || res.CPUPerReq() <= 0 {
		t.Fatalf("result %+v, counter %d", res, counter.Load())
	}

	_, err = HTTP(testContext(t), HTTPOptions{URL: "http://" + addr + "/nope", Duration: 100 * time.Millisecond})
	if !errors.Is(err, ErrResponse) {
		t.Errorf("HTTP on a 404 page: %v, want ErrResponse", err)
	}
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name, in   string
		status     int
		body       string
		wantErr    bool
		wantErrRsp bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\nHello World!", 200, "Hello World!", false, false},
		{"lower-case", "HTTP/1.1 404 Not Found\r\ncontent-length:3\r\n\r\nno!", 404, "no!", false, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nHello\r\n7\r\n World!\r\n0\r\nT: 1\r\n\r\n", 200, "Hello World!", false, false},
		{"no-content", "HTTP/1.1 204 No Content\r\n\r\n", 204, "", false, false},
		{"no-length", "HTTP/1.1 200 OK\r\n\r\nabc", 0, "", true, true},
		{"bad-status", "HTTP/1.1 2x0 OK\r\n\r\n", 0, "", true, true},
		{"not-http", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", true, true},
		{"bad-header", "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", 0, "", true, true},
		{"huge-length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 0, "", true, true},
		{"short-body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, err := readResponse(bufio.NewReader(strings.NewReader(tt.in)), nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErrRsp && !errors.Is(err, ErrResponse) {
				t.Errorf("error %v is not ErrResponse", err)
			}
			if err == nil && (status != tt.status || string(body) != tt.body) {
				t.Errorf("got %d %q, want %d %q", status, body, tt.status, tt.body)
			}
		})
	}
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello World!"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(strings.NewReader(string(in)))
		status, body, err := readResponse(br, nil)
		if err == nil && (status < 100 || status > 999 || len(body) > len(in)) {
			t.Fatalf("status %d, body of %d bytes from %d bytes of input", status, len(body), len(in))
		}
	})
}

func TestParseWrk(t *testing.T) {
	const good = "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 100 connections\n" +
		"  204000 requests in 3.00s, 30.00MB read\nRequests/sec:  68000.50\nTransfer/sec:     10.00MB\n"
	tests := []struct {
		in      string
		want    float64
		wantErr bool
	}{
		{good, 68000.50, false},
		{good + "  Non-2xx or 3xx responses: 5\n", 0, true},
		{"nothing here", 0, true},
		{"Requests/sec: lots", 0, true},
	}
	for _, tt := range tests {
		got, err := parseWrk([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseWrk(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestWrk(t *testing.T) {
	addr, _ := startBaseline(t)
	res, err := Wrk(testContext(t), "http://"+addr+"/", 4, 1, time.Second)
	if errors.Is(err, ErrNoWrk) {
		t.Skip("wrk is not installed (apt-get install wrk); it is optional")
	}
	if err != nil || res.ReqPerSec <= 0 {
		t.Fatalf("Wrk = %+v, %v", res, err)
	}
}

func TestURLs(t *testing.T) {
	tests := []struct {
		base, path, ws, http string
		wantErr              bool
	}{
		{"ws://127.0.0.1:8080", "/broadcast", "ws://127.0.0.1:8080/broadcast", "http://127.0.0.1:8080/broadcast", false},
		{"http://127.0.0.1:8080/x", "/", "ws://127.0.0.1:8080/", "http://127.0.0.1:8080/", false},
		{"127.0.0.1:9", "/", "ws://127.0.0.1:9/", "http://127.0.0.1:9/", false},
		{"localhost:9", "/", "ws://localhost:9/", "http://localhost:9/", false},
		{"https://h", "/", "wss://h/", "https://h/", false},
		{"ftp://h/", "/", "", "", true},
		{"", "/", "", "", true},
	}
	for _, tt := range tests {
		w, err := WebSocketURL(tt.base, tt.path)
		if (err != nil) != tt.wantErr || w != tt.ws {
			t.Errorf("WebSocketURL(%q, %q) = %q, %v; want %q", tt.base, tt.path, w, err, tt.ws)
		}
		h, err := HTTPURL(tt.base, tt.path)
		if (err != nil) != tt.wantErr || h != tt.http {
			t.Errorf("HTTPURL(%q, %q) = %q, %v; want %q", tt.base, tt.path, h, err, tt.http)
		}
	}
}

// TestConnRead feeds a Conn hand-made server frames over a pipe: a ping in
// the middle of a fragmented message, then a close.
func TestConnRead(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	c := &Conn{nc: client, rd: client, mask: ws.NewMask(), readBuf: 64}
	defer c.Close()
	go func() {
		for _, f := range []ws.Frame{
			{Header: ws.Header{OpCode: ws.OpText, Length: 5}, Payload: []byte("Hello")},
			ws.NewPingFrame([]byte("p")),
			{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 7}, Payload: []byte(" World!")},
			ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye")),
		} {
			if err := ws.WriteFrame(server, f); err != nil {
				return
			}
			if f.Header.OpCode == ws.OpPing {
				pong, err := ws.ReadFrame(server)
				if err != nil || pong.Header.OpCode != ws.OpPong || !pong.Header.Masked {
					server.Close()
					return
				}
				ws.Cipher(pong.Payload, pong.Header.Mask, 0)
				if string(pong.Payload) != "p" {
					server.Close()
					return
				}
			}
		}
		io.Copy(io.Discard, server)
	}()
	op, msg, err := c.Read(nil)
	if err != nil || op != ws.OpText || string(msg) != "Hello World!" {
		t.Fatalf("Read = %v, %q, %v", op, msg, err)
	}
	_, _, err = c.Read(msg)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "1001") {
		t.Fatalf("Read after close frame: %v", err)
	}
}

func TestConnReadRejects(t *testing.T) {
	tests := []struct {
		name  string
		frame ws.Frame
	}{
		{"masked", ws.MaskFrame(ws.NewTextFrame([]byte("x")))},
		{"rsv", ws.Frame{Header: ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpText, Length: 1}, Payload: []byte("x")}},
		{"continuation-first", ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 1}, Payload: []byte("x")}},
		{"reserved-opcode", ws.Frame{Header: ws.Header{Fin: true, OpCode: 3, Length: 1}, Payload: []byte("x")}},
		{"long-ping", ws.NewPingFrame(make([]byte, 126))},
		{"huge", ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpBinary, Length: MaxMessageSize + 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			c := &Conn{nc: client, rd: client, mask: ws.NewMask(), readBuf: 64}
			defer c.Close()
			go ws.WriteFrame(server, tt.frame)
			if _, _, err := c.Read(nil); !errors.Is(err, ErrProtocol) {
				t.Errorf("Read = %v, want ErrProtocol", err)
			}
		})
	}
}

func TestDialManyFailure(t *testing.T) {
	addr, _ := startBaseline(t)
	// /nope answers 404, so the handshake fails.
	conns, err := DialMany(testContext(t), "ws://"+addr+"/nope", 3, DialOptions{}, nil)
	if err == nil || conns != nil {
		t.Fatalf("DialMany to a 404 path = %v, %v", conns, err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Errorf("timed out waiting for %s", what)
}

func BenchmarkAppendFrame(b *testing.B) {
	b.ReportAllocs()
	c := &Conn{mask: ws.NewMask()}
	payload := make([]byte, 64)
	buf := make([]byte, 0, 128)
	for b.Loop() {
		buf = c.AppendFrame(buf[:0], ws.OpBinary, payload)
	}
}

// FuzzConnRead feeds arbitrary server bytes to Conn.Read: it must return a
// message no longer than its input, or an error, never panic or hang.
func FuzzConnRead(f *testing.F) {
	for _, fr := range []ws.Frame{
		ws.NewTextFrame([]byte("hello")),
		ws.NewPingFrame([]byte("p")),
		{Header: ws.Header{OpCode: ws.OpBinary, Length: 2}, Payload: []byte("ab")},
		ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")),
	} {
		b, _ := ws.CompileFrame(fr)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		go io.Copy(io.Discard, server) // pongs and close replies
		c := &Conn{nc: client, rd: bytes.NewReader(in), mask: ws.NewMask(), readBuf: 16}
		for range 8 {
			_, msg, err := c.Read(nil)
			if err != nil {
				return
			}
			if len(msg) > len(in) {
				t.Fatalf("message of %d bytes from %d bytes of input", len(msg), len(in))
			}
		}
	})
}
