package wsext

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"

	"github.com/wsd-server/wsd/wsext/internal/poller"
)

// The tests of the resource model (doc.go): every buffer bounded, every
// bound with its policy, and no cut frame or lost message where features
// meet.

// TestEachBusyTargetDelaysOnlyItself: a connection held in OnMessage gets
// its Each task later; every other connection gets it now, and onFinish
// waits for the busy one.
func TestEachBusyTargetDelaysOnlyItself(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			release := make(chan struct{})
			entered := make(chan *Conn, 1)
			opened := make(chan *Conn, 3)
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{
					OnOpen: func(ws *Conn) { opened <- ws },
					OnMessage: func(ws *Conn, data []byte, isText bool) {
						entered <- ws
						<-release
					},
				}
			})
			busy, _ := dial(t, ts.url(), nil)
			<-opened
			for range 2 {
				dial(t, ts.url(), nil)
				<-opened
			}
			busy.Write(context.Background(), websocket.MessageText, []byte("hold"))
			held := <-entered
			ran := make(chan *Conn, 3)
			finished := make(chan struct{})
			ts.Each(nil, func(ws *Conn, _ any) { ran <- ws }, nil, func(*Conn, any) { close(finished) })
			for range 2 {
				select {
				case ws := <-ran:
					if ws == held {
						t.Fatal("the busy connection's task ran during its OnMessage")
					}
				case <-time.After(10 * time.Second):
					close(release)
					t.Fatal("a busy connection held up the Each tasks of the others")
				}
			}
			select {
			case <-finished:
				t.Fatal("onFinish ran before the busy connection's task")
			default:
			}
			close(release)
			if ws := <-ran; ws != held {
				t.Fatalf("last task ran for %v, want the busy %v", ws, held)
			}
			select {
			case <-finished:
			case <-time.After(10 * time.Second):
				t.Fatal("onFinish never ran")
			}
		})
	}
}

// TestEachOriginatorPaused: a connection whose broadcasts wait for a busy
// recipient is read no further, so its unfinished Each work stays within
// the window; once the recipient is free every message is handled, in
// order.
func TestEachOriginatorPaused(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			release := make(chan struct{})
			entered := make(chan struct{}, 1)
			var handled atomic.Int32
			var order sync.Mutex
			var got []int
			ts := startServer(t, m.opts, func(ctx *fasthttp.RequestCtx) Settings {
				if string(ctx.Path()) == "/busy" {
					return Settings{OnMessage: func(*Conn, []byte, bool) {
						entered <- struct{}{}
						<-release
					}}
				}
				return Settings{OnMessage: func(ws *Conn, data []byte, _ bool) {
					handled.Add(1)
					seq := int(binary.BigEndian.Uint32(data))
					ws.Server().Each(ws, func(*Conn, any) {}, seq, func(_ *Conn, arg any) {
						order.Lock()
						got = append(got, arg.(int))
						order.Unlock()
					})
				}}
			})
			busy, _ := dial(t, "ws://"+ts.addr+"/busy", nil)
			busy.Write(context.Background(), websocket.MessageText, []byte("hold"))
			<-entered
			sender, _ := dial(t, ts.url(), nil)
			const n = 100
			sent := make(chan error, 1)
			go func() {
				msg := make([]byte, 8<<10) // at most 8 messages in one 64 KiB read
				for i := range n {
					binary.BigEndian.PutUint32(msg, uint32(i))
					if err := sender.Write(context.Background(), websocket.MessageBinary, msg); err != nil {
						sent <- err
						return
					}
				}
				sent <- nil
			}()
			// Waiting can only let the sender get further: a count within
			// the bound after the wait is the bound holding.
			time.Sleep(time.Second)
			const bound = eachWindow + 8 + 1
			if h := handled.Load(); h > bound {
				t.Fatalf("a paused sender had %d messages handled, want at most %d", h, bound)
			}
			close(release)
			if err := <-sent; err != nil {
				t.Fatalf("sender: %v", err)
			}
			waitFor(t, "every onFinish", 20*time.Second, func() bool {
				order.Lock()
				defer order.Unlock()
				return len(got) == n
			})
			for i, seq := range got {
				if seq != i {
					t.Fatalf("onFinish %d came for message %d", i, seq)
				}
			}
		})
	}
}

// TestPingFloodBounded: a peer that pings and never reads holds at most
// one pong in the server's queue.
func TestPingFloodBounded(t *testing.T) {
	opened := make(chan *Conn, 1)
	ts := startServer(t, Options{}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
	})
	rc := rawDialBuffer(t, ts.addr, "", 4096)
	ws := <-opened
	payload := bytes.Repeat([]byte("p"), maxControlPayload)
	peak := 0
	for i := range 60000 { // 7.9 MB: more than the server's socket buffer takes
		rc.writeFrame(t, true, opPing, payload)
		if i%500 == 0 {
			peak = max(peak, ws.BufferedAmount())
		}
	}
	waitFor(t, "the server to parse the flood", 20*time.Second, func() bool {
		return ts.Stats().PongsSkipped > 0
	})
	peak = max(peak, ws.BufferedAmount())
	if limit := 2 * (maxControlPayload + 2); peak > limit {
		t.Fatalf("%d bytes queued for a ping flooder, want at most %d", peak, limit)
	}
}

// TestBackpressureCloseAtFrameBoundary: a reader too slow for its queue
// gets every frame whole, then a parseable 1008: never a cut frame.
func TestBackpressureCloseAtFrameBoundary(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.MaxBackpressure = 64 << 10
			opened := make(chan *Conn, 1)
			ts := startServer(t, opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
			})
			rc := rawDial(t, ts.addr, "")
			ws := <-opened
			const size = 10000 // not a divisor of any buffer size
			msg := make([]byte, size)
			sent := 0
			for ; sent < 100000; sent++ {
				for i := range msg {
					msg[i] = byte(sent + i)
				}
				var err error
				if sent%2 == 0 {
					err = ws.Write(msg, false)
				} else {
					pm := NewPreparedMessage(msg, false)
					err = ws.WritePrepared(pm)
					pm.Release()
				}
				if errors.Is(err, ErrBackpressure) {
					break
				}
				if err != nil {
					t.Fatalf("write %d: %v", sent, err)
				}
			}
			if sent == 100000 {
				t.Fatal("a reader that never reads was never closed")
			}
			for i := 0; ; i++ {
				op, p, err := rc.readFrame()
				if err != nil {
					t.Fatalf("after %d whole frames: %v (a cut frame or no close)", i, err)
				}
				if op == opClose {
					if code := int(binary.BigEndian.Uint16(p)); code != ClosePolicyViolation {
						t.Fatalf("close code %d, want 1008", code)
					}
					if i > sent {
						t.Fatalf("%d frames before the close, but only %d were written", i, sent)
					}
					return
				}
				if op != opBinary || len(p) != size {
					t.Fatalf("frame %d: op %d, %d bytes", i, op, len(p))
				}
				for j := range p {
					if p[j] != byte(i+j) {
						t.Fatalf("frame %d byte %d is %d, want %d", i, j, p[j], byte(i+j))
					}
				}
			}
		})
	}
}

// TestOnDrainAndBufferedAmount: a writer that waits for OnDrain paces
// itself and is never closed.
func TestOnDrainAndBufferedAmount(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.MaxBackpressure = 1 << 20
			drained := make(chan int, 16)
			opened := make(chan *Conn, 1)
			ts := startServer(t, opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{
					OnOpen:  func(ws *Conn) { opened <- ws },
					OnDrain: func(ws *Conn) { drained <- ws.BufferedAmount() },
				}
			})
			c, _ := dial(t, ts.url(), nil)
			ws := <-opened
			msg := make([]byte, 256<<10)
			writes := 0
			for ws.BufferedAmount() == 0 {
				if writes++; writes > 2000 {
					t.Fatal("512 MB written to a reader that does not read, and nothing queued")
				}
				if err := ws.Write(msg, false); err != nil {
					t.Fatalf("write %d: %v", writes, err)
				}
			}
			go func() {
				for {
					if _, _, err := c.Read(context.Background()); err != nil {
						return
					}
				}
			}()
			select {
			case n := <-drained:
				if n != 0 {
					t.Fatalf("BufferedAmount in OnDrain = %d, want 0", n)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("OnDrain never came")
			}
			if err := ws.Write(msg, false); err != nil {
				t.Fatalf("write after the drain: %v", err)
			}
		})
	}
}

// TestDeflateBroadcastReusedBuffer: OnMessage's data is reused once it
// returns, while the Each tasks that write it to compressed connections
// run later: every receiver must still get the bytes that were sent.
func TestDeflateBroadcastReusedBuffer(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.Compression = true
			opened := make(chan *Conn, 4)
			ts := startServer(t, opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{
					OnOpen: func(ws *Conn) { opened <- ws },
					OnMessage: func(ws *Conn, data []byte, isText bool) {
						pm := NewPreparedMessage(data, isText)
						ws.Server().Each(ws, func(t *Conn, arg any) { t.WritePrepared(arg.(*PreparedMessage)) },
							pm, func(_ *Conn, arg any) { arg.(*PreparedMessage).Release() })
					},
				}
			})
			dopts := &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover}
			var receivers []*websocket.Conn
			for range 3 {
				c, resp := dial(t, ts.url(), dopts)
				if !strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
					t.Fatal("deflate not negotiated")
				}
				receivers = append(receivers, c)
				<-opened
			}
			sender, _ := dial(t, ts.url(), dopts)
			<-opened
			const n = 300
			want := func(i int) []byte {
				return []byte(strings.Repeat(fmt.Sprintf("message %d: héllo wörld ✓ ", i), 20+i%7))
			}
			go func() {
				for i := range n {
					sender.Write(context.Background(), websocket.MessageText, want(i))
				}
			}()
			var wg sync.WaitGroup
			for r, c := range receivers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					for i := range n {
						_, got, err := c.Read(ctx)
						if err != nil {
							t.Errorf("receiver %d, message %d: %v", r, i, err)
							return
						}
						if !bytes.Equal(got, want(i)) {
							t.Errorf("receiver %d, message %d corrupted: %.40q", r, i, got)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

func TestPreparedMessageOwnsItsBytes(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefgh"), 100)
	want := bytes.Clone(data)
	pm := NewPreparedMessage(data, true)
	defer pm.Release()
	for i := range data {
		data[i] = 0xff // the caller reuses its buffer
	}
	if !bytes.Equal(pm.data, want) {
		t.Fatal("the prepared payload changed with the caller's buffer")
	}
	for _, level := range []int{1, 9, 1} {
		f := pm.compressed(level)
		if f == nil {
			t.Fatalf("level %d: not compressed", level)
		}
		hl := headerLen(f.b)
		got, err := inflate(f.b[hl:], 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("level %d: inflated %q, %v", level, got, err)
		}
		putBuf(got)
	}
	if len(pm.zfr) != 2 {
		t.Fatalf("%d compressed frames kept for levels 1, 9, 1; want one per level", len(pm.zfr))
	}
}

// TestFrameHeaderRules: every frame RFC 6455 section 5 forbids is
// refused with its close code, and none panics.
func TestFrameHeaderRules(t *testing.T) {
	tests := []struct {
		name  string
		first []byte // a first frame sent whole, or nil
		hdr   []byte // then a raw header, mask key added
		code  int
	}{
		{"16-bit length under 126", nil, []byte{0x82, 0x80 | 126, 0, 5}, CloseProtocolError},
		{"64-bit length under 65536", nil, append([]byte{0x82, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 200)...), CloseProtocolError},
		{"64-bit length with the top bit", nil, append([]byte{0x82, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 1<<63)...), CloseProtocolError},
		{"continuation of 2^63-1 bytes", []byte("start"), append([]byte{0x80, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 1<<63-1)...), CloseMessageTooBig},
		{"text of 2^63-1 bytes", nil, append([]byte{0x81, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 1<<63-1)...), CloseMessageTooBig},
		{"unmasked", nil, []byte{0x82, 0x05}, CloseProtocolError},
		{"reserved opcode 3", nil, []byte{0x83, 0x80}, CloseProtocolError},
		{"reserved opcode 0xB", nil, []byte{0x8B, 0x80}, CloseProtocolError},
		{"RSV2", nil, []byte{0xA2, 0x80}, CloseProtocolError},
		{"RSV1 without deflate", nil, []byte{0xC2, 0x80}, CloseProtocolError},
		{"fragmented ping", nil, []byte{0x09, 0x80}, CloseProtocolError},
		{"ping over 125 bytes", nil, []byte{0x89, 0x80 | 126, 0, 126}, CloseProtocolError},
		{"continuation without a message", nil, []byte{0x80, 0x80}, CloseProtocolError},
		{"text inside a fragmented message", []byte("start"), []byte{0x81, 0x80}, CloseProtocolError},
	}
	ts := startServer(t, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, echoSettings)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := rawDial(t, ts.addr, "")
			if tc.first != nil {
				rc.writeFrame(t, false, opText, tc.first)
			}
			hdr := tc.hdr
			if hdr[1]&0x80 != 0 {
				hdr = append(bytes.Clone(hdr), 1, 2, 3, 4)
			}
			if _, err := rc.Write(hdr); err != nil {
				t.Fatal(err)
			}
			if code := rc.readClose(t); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
		})
	}
	if n := ts.Stats().Panics; n != 0 {
		t.Fatalf("%d panics while refusing bad frames", n)
	}
}

// TestOnClosePanicAfterFailedUpgrade: an OnClose that panics after a bad
// handshake is contained like any callback.
func TestOnClosePanicAfterFailedUpgrade(t *testing.T) {
	var addr atomic.Value
	ts := startServer(t, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnClose: func(ws *Conn) {
			addr.Store(ws.RemoteAddr().String()) // nil here used to panic
			panic("user bug in OnClose")
		}}
	})
	for range 3 {
		nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("the server is gone: %v", err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
		status, _ := io.ReadAll(io.LimitReader(nc, 12))
		nc.Close()
		if !bytes.HasSuffix(status, []byte("426")) {
			t.Fatalf("status line %q, want 426", status)
		}
	}
	if a, _ := addr.Load().(string); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Fatalf("RemoteAddr after a failed upgrade = %q", a)
	}
	if n := ts.Stats().Panics; n != 3 {
		t.Fatalf("%d panics counted, want 3", n)
	}
}

// TestTimeoutRules: a sub-second timeout is rounded up, not turned off,
// and a ping never comes before the timeout.
func TestTimeoutRules(t *testing.T) {
	if got := NewServer(Options{Timeout: -1, MaxMsgSize: 10}); got.Timeout() != 0 || got.MaxMsgSize() != 10 {
		t.Fatalf("Options{Timeout: -1, MaxMsgSize: 10} gave %v and %d", got.Timeout(), got.MaxMsgSize())
	}
	if got := NewServer(Options{}); got.Timeout() != DefaultTimeout || got.MaxMsgSize() != DefaultMaxMsgSize {
		t.Fatalf("zero Options gave %v and %d", got.Timeout(), got.MaxMsgSize())
	}
	s := NewServer(Options{})
	for _, tc := range []struct{ set, want time.Duration }{
		{300 * time.Millisecond, time.Second},
		{0, 0},
		{-time.Second, 0},
		{2500 * time.Millisecond, 2500 * time.Millisecond},
	} {
		s.SetTimeout(tc.set)
		if got := s.Timeout(); got != tc.want {
			t.Errorf("SetTimeout(%v): Timeout() = %v, want %v", tc.set, got, tc.want)
		}
	}

	ts := startServer(t, Options{}, echoSettings)
	const timeout = 2 * time.Second
	ts.SetTimeout(timeout)
	for range 2 {
		// The server's last activity is its side of the handshake, which
		// comes after this instant: a ping before start+timeout is early.
		last := time.Now()
		rc := rawDial(t, ts.addr, "")
		op, _, err := rc.readFrame()
		if err != nil || op != opPing {
			t.Fatalf("got op %d, %v; want a ping", op, err)
		}
		if idle := time.Since(last); idle < timeout {
			t.Fatalf("ping after %v of silence, before the %v timeout", idle, timeout)
		}
	}
}

type panickingEngine struct{ memEngine }

func (*panickingEngine) Publish(string, []byte, bool) error { panic("engine bug") }

// TestEnginePanicContained: a panic in the user's engine is an error for
// that call, not the end of the process.
func TestEnginePanicContained(t *testing.T) {
	e := &panickingEngine{}
	s := NewServer(Options{Engine: e, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for range 3 {
		if err := s.Publish("ch", []byte("x"), true); err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("Publish = %v, want the engine's panic as an error", err)
		}
	}
	if n := s.Stats().Panics; n != 3 {
		t.Fatalf("%d panics counted, want 3", n)
	}
}

// TestBlockingCallbackHandOff measures what a callback that blocks costs
// the other connections of its event loop: they move to a new goroutine
// after one or two stall checks, so their echoes come back long before the
// callback returns.
func TestBlockingCallbackHandOff(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	ts := startServer(t, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, func(ctx *fasthttp.RequestCtx) Settings {
		if string(ctx.Path()) == "/block" {
			return Settings{OnMessage: func(*Conn, []byte, bool) {
				entered <- struct{}{}
				<-release
			}}
		}
		return echoSettings(ctx)
	})
	defer close(release)
	// One echo connection per loop at least: some share the blocked one's.
	var echoes []*websocket.Conn
	for range 8 {
		c, _ := dial(t, ts.url(), nil)
		echoes = append(echoes, c)
	}
	blocker, _ := dial(t, "ws://"+ts.addr+"/block", nil)
	blocker.Write(context.Background(), websocket.MessageText, []byte("block"))
	<-entered
	var worst time.Duration
	for i, c := range echoes {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c.Write(ctx, websocket.MessageText, []byte("ping"))
		_, _, err := c.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("echo %d while a callback blocks: %v", i, err)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst echo round trip while another connection's callback blocks: %v (stall check every %v)", worst, poller.StallCheck)
	if ts.Stats().LoopStalls == 0 {
		t.Fatal("a blocked loop was not noticed")
	}
}
