package wsext

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"
)

func TestEchoSizes(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ts := startServer(t, m.opts, echoSettings)
			ts.SetMaxMsgSize(2 << 20)
			c, _ := dial(t, ts.url(), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, size := range []int{0, 125, 126, 65535, 65536, 1 << 20} {
				for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
					msg := bytes.Repeat([]byte("abcdefghij"), size/10+1)[:size]
					if err := c.Write(ctx, typ, msg); err != nil {
						t.Fatalf("write %d: %v", size, err)
					}
					gotTyp, got, err := c.Read(ctx)
					if err != nil {
						t.Fatalf("read %d: %v", size, err)
					}
					if gotTyp != typ || !bytes.Equal(got, msg) {
						t.Fatalf("size %d %v: got %v of %d bytes", size, typ, gotTyp, len(got))
					}
				}
			}
		})
	}
}

func TestMaxMsgSize(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ts := startServer(t, m.opts, echoSettings)
			ts.SetMaxMsgSize(1000)

			t.Run("single frame over the limit", func(t *testing.T) {
				c, _ := dial(t, ts.url(), nil)
				c.Write(context.Background(), websocket.MessageBinary, make([]byte, 1001))
				if code := closeCode(t, c); code != CloseMessageTooBig {
					t.Fatalf("close code %d, want 1009", code)
				}
			})
			t.Run("fragments over the limit", func(t *testing.T) {
				rc := rawDial(t, ts.addr, "")
				rc.writeFrame(t, false, opBinary, make([]byte, 600))
				rc.writeFrame(t, true, opContinuation, make([]byte, 600))
				if code := rc.readClose(t); code != CloseMessageTooBig {
					t.Fatalf("close code %d, want 1009", code)
				}
			})
			t.Run("the limit is never buffered", func(t *testing.T) {
				// Only the header of a 1 GiB frame is sent: the server must
				// answer from the header alone.
				rc := rawDial(t, ts.addr, "")
				rc.Write([]byte{0x82, 0x80 | 127, 0, 0, 0, 0x40, 0, 0, 0, 0, 1, 2, 3, 4})
				if code := rc.readClose(t); code != CloseMessageTooBig {
					t.Fatalf("close code %d, want 1009", code)
				}
			})
			t.Run("a change applies to the next message of an open connection", func(t *testing.T) {
				ts.SetMaxMsgSize(1000)
				c, _ := dial(t, ts.url(), nil)
				ctx := context.Background()
				c.Write(ctx, websocket.MessageBinary, make([]byte, 900))
				if _, _, err := c.Read(ctx); err != nil {
					t.Fatalf("900 bytes under a 1000 limit: %v", err)
				}
				ts.SetMaxMsgSize(800)
				c.Write(ctx, websocket.MessageBinary, make([]byte, 900))
				if code := closeCode(t, c); code != CloseMessageTooBig {
					t.Fatalf("close code %d, want 1009 after lowering the limit", code)
				}
				ts.SetMaxMsgSize(1000)
			})
		})
	}
}

func TestInvalidUTF8(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ts := startServer(t, m.opts, echoSettings)
			for _, tc := range []struct {
				name   string
				frames [][]byte
			}{
				{"single frame", [][]byte{[]byte("ok \xed\xa0\x80 bad")}},
				{"fragmented", [][]byte{[]byte("κό"), []byte("\xc0\xaf"), []byte("x")}},
				{"truncated at the end", [][]byte{[]byte("abc\xe2\x82")}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					rc := rawDial(t, ts.addr, "")
					for i, f := range tc.frames {
						op := byte(opContinuation)
						if i == 0 {
							op = opText
						}
						rc.writeFrame(t, i == len(tc.frames)-1, op, f)
					}
					if code := rc.readClose(t); code != CloseInvalidPayload {
						t.Fatalf("close code %d, want 1007", code)
					}
				})
			}
			t.Run("Write refuses invalid text", func(t *testing.T) {
				opened := make(chan *Conn, 1)
				ts.settings = func(*fasthttp.RequestCtx) Settings {
					return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
				}
				dial(t, ts.url(), nil)
				ws := <-opened
				if err := ws.Write([]byte("\xff"), true); err != ErrInvalidUTF8 {
					t.Fatalf("Write of invalid text: %v, want ErrInvalidUTF8", err)
				}
				if err := ws.Write([]byte("\xff"), false); err != nil {
					t.Fatalf("Write of binary: %v", err)
				}
			})
		})
	}
}

func TestTimeoutPingAndSilentPeer(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			closed := make(chan struct{}, 4)
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnClose: func(*Conn) { closed <- struct{}{} }}
			})
			ts.SetTimeout(time.Second)

			pinged := make(chan time.Time, 1)
			start := time.Now()
			c, _ := dial(t, ts.url(), &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
				select {
				case pinged <- time.Now():
				default:
				}
				return true
			}})
			go c.Read(context.Background()) // reading answers pings
			select {
			case at := <-pinged:
				if d := at.Sub(start); d > 3*time.Second {
					t.Fatalf("first ping after %v, want within timeout+2s", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no ping within 5s of a 1s timeout")
			}

			// A peer that answers nothing: a raw socket that never reads.
			rc := rawDial(t, ts.addr, "")
			_ = rc
			select {
			case <-closed:
			case <-time.After(6 * time.Second):
				t.Fatal("silent peer not closed within 6s of a 1s timeout")
			}
			// The answering client is still open.
			if ts.Count() != 1 {
				t.Fatalf("Count = %d after the silent peer closed, want 1", ts.Count())
			}
		})
	}
}

func TestTimeoutInheritedAtOpen(t *testing.T) {
	opened := make(chan *Conn, 1)
	ts := startServer(t, Options{}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
	})
	ts.SetTimeout(7 * time.Second)
	dial(t, ts.url(), nil)
	ws := <-opened
	ts.SetTimeout(time.Second)
	if ws.timeout != int64(7*time.Second) {
		t.Fatalf("open connection's timeout changed to %v; spec: only new connections take a change", time.Duration(ws.timeout))
	}
}

func TestUserDataCallbacksAndUUID(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			var mu sync.Mutex
			var events []string
			record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{
					UData: "initial",
					OnOpen: func(ws *Conn) {
						record(fmt.Sprint(ws.UUID(), " open ", ws.UData()))
						if old := ws.SetUData(42); old != "initial" {
							t.Errorf("SetUData returned %v, want the initial value", old)
						}
					},
					OnMessage: func(ws *Conn, data []byte, isText bool) {
						record(fmt.Sprint(ws.UUID(), " message ", ws.UData(), " ", string(data)))
						ws.Write([]byte(fmt.Sprint(ws.UUID())), true)
					},
					OnClose: func(ws *Conn) { record(fmt.Sprint(ws.UUID(), " close ", ws.UData())) },
				}
			})
			ctx := context.Background()
			seen := map[string]bool{}
			for range 3 {
				c, _ := dial(t, ts.url(), nil)
				c.Write(ctx, websocket.MessageText, []byte("hi"))
				_, id, err := c.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if seen[string(id)] || string(id) == "0" {
					t.Fatalf("UUID %s repeated or zero", id)
				}
				seen[string(id)] = true
				c.Close(websocket.StatusNormalClosure, "")
			}
			waitFor(t, "three OnClose", 5*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return strings.Count(strings.Join(events, "|"), "close 42") == 3
			})
			mu.Lock()
			defer mu.Unlock()
			// Connections overlap (one's OnClose may follow the next one's
			// OnOpen), but each one's own callbacks come in order.
			for id := range seen {
				var own []string
				for _, e := range events {
					if after, ok := strings.CutPrefix(e, id+" "); ok {
						own = append(own, after)
					}
				}
				if len(own) != 3 || own[0] != "open initial" || own[1] != "message 42 hi" || own[2] != "close 42" {
					t.Fatalf("connection %s: events %q", id, own)
				}
			}
			if ws := (&Conn{}); ws.Server() != nil {
				t.Fatal("zero Conn has a server")
			}
		})
	}
}

func TestEachAndCount(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			conns := make(chan *Conn, 8)
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnOpen: func(ws *Conn) { conns <- ws }}
			})
			var clients []*websocket.Conn
			var servers []*Conn
			for range 5 {
				c, _ := dial(t, ts.url(), nil)
				clients = append(clients, c)
				servers = append(servers, <-conns)
			}
			if n := ts.Count(); n != 5 {
				t.Fatalf("Count = %d, want 5", n)
			}
			for _, tc := range []struct {
				name       string
				originator *Conn
				want       int
			}{
				{"nil originator reaches all", nil, 5},
				{"originator excluded", servers[2], 4},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var ran atomic.Int32
					var visited sync.Map
					finished := make(chan int32, 2)
					ts.Each(tc.originator, func(ws *Conn, arg any) {
						if ws == tc.originator {
							t.Errorf("task ran for the originator")
						}
						if arg != "arg" {
							t.Errorf("task arg %v", arg)
						}
						visited.Store(ws, true)
						ran.Add(1)
					}, "arg", func(o *Conn, arg any) {
						if o != tc.originator || arg != "arg" {
							t.Errorf("onFinish(%v, %v)", o, arg)
						}
						finished <- ran.Load()
					})
					select {
					case n := <-finished:
						if int(n) != tc.want {
							t.Fatalf("onFinish after %d tasks, want %d", n, tc.want)
						}
					case <-time.After(5 * time.Second):
						t.Fatal("onFinish never ran")
					}
					select {
					case <-finished:
						t.Fatal("onFinish ran twice")
					case <-time.After(50 * time.Millisecond):
					}
				})
			}
			clients[0].Close(websocket.StatusNormalClosure, "")
			waitFor(t, "Count to drop to 4", 5*time.Second, func() bool { return ts.Count() == 4 })
		})
	}
}

// TestEachNeverConcurrentWithCallbacks holds a connection in OnMessage and
// checks that an Each task for it waits.
func TestEachNeverConcurrentWithCallbacks(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			var inCallback atomic.Bool
			release := make(chan struct{})
			entered := make(chan *Conn, 1)
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnMessage: func(ws *Conn, data []byte, isText bool) {
					inCallback.Store(true)
					entered <- ws
					<-release
					inCallback.Store(false)
				}}
			})
			c, _ := dial(t, ts.url(), nil)
			c.Write(context.Background(), websocket.MessageText, []byte("hold"))
			<-entered
			done := make(chan bool, 1)
			ts.Each(nil, func(ws *Conn, _ any) { done <- inCallback.Load() }, nil, nil)
			select {
			case <-done:
				t.Fatal("Each task ran while OnMessage was running")
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			if concurrent := <-done; concurrent {
				t.Fatal("Each task overlapped OnMessage")
			}
		})
	}
}

func TestOrderedMessages(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			got := make(chan string, 2000)
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnMessage: func(ws *Conn, data []byte, isText bool) { got <- string(data) }}
			})
			c, _ := dial(t, ts.url(), nil)
			ctx := context.Background()
			for i := range 1000 {
				c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(i)))
			}
			for i := range 1000 {
				select {
				case s := <-got:
					if s != fmt.Sprint(i) {
						t.Fatalf("message %d arrived as %q", i, s)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("message %d never arrived", i)
				}
			}
		})
	}
}

func TestCookieOn101(t *testing.T) {
	ts := startServer(t, Options{}, func(ctx *fasthttp.RequestCtx) Settings {
		var ck fasthttp.Cookie
		ck.SetKey("session")
		ck.SetValue("abc123")
		ctx.Response.Header.SetCookie(&ck)
		ctx.Response.Header.Set("X-Custom", "yes")
		return Settings{}
	})
	_, resp := dial(t, ts.url(), nil)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Set-Cookie"); !strings.Contains(got, "session=abc123") {
		t.Fatalf("Set-Cookie %q", got)
	}
	if resp.Header.Get("X-Custom") != "yes" {
		t.Fatal("custom header missing from the 101")
	}
}

func TestConcurrentWriters(t *testing.T) {
	const writers, each = 8, 300
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			// The reader here is slower than eight writers: let the queue
			// hold it all, this test is about frames never interleaving.
			opts := m.opts
			opts.MaxBackpressure = 256 << 20
			writeErrs := make(chan error, writers)
			var wg sync.WaitGroup
			ts := startServer(t, opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnOpen: func(ws *Conn) {
					for g := range writers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i := range each {
								// Sizes vary so frames of all header lengths interleave.
								pad := strings.Repeat("x", (g*37+i*101)%70000)
								if err := ws.Write([]byte(fmt.Sprintf("%d:%d:%s", g, i, pad)), true); err != nil {
									writeErrs <- err
									return
								}
							}
						}()
					}
				}}
			})
			// The writers report here, never after the test has ended.
			t.Cleanup(func() {
				wg.Wait()
				close(writeErrs)
				for err := range writeErrs {
					t.Errorf("write: %v", err)
				}
			})
			c, _ := dial(t, ts.url(), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			next := make([]int, writers)
			for range writers * each {
				_, data, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				var g, i int
				var pad string
				fmt.Sscanf(string(data), "%d:%d:%s", &g, &i, &pad)
				if i != next[g] || len(pad) != (g*37+i*101)%70000 {
					t.Fatalf("writer %d: got message %d with %d bytes of padding, want message %d", g, i, len(pad), next[g])
				}
				next[g]++
			}
		})
	}
}

func TestCloseFromAnotherGoroutineAndWriteAfterClose(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opened := make(chan *Conn, 1)
			closed := make(chan struct{})
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{
					OnOpen:  func(ws *Conn) { opened <- ws },
					OnClose: func(*Conn) { close(closed) },
				}
			})
			c, _ := dial(t, ts.url(), nil)
			ws := <-opened
			go ws.Close()
			if code := closeCode(t, c); code != CloseNormal {
				t.Fatalf("client saw close code %d, want 1000", code)
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("OnClose not called after Close")
			}
			if err := ws.Write([]byte("late"), true); err == nil {
				t.Fatal("Write on a closed connection succeeded")
			}
			if err := ws.Close(); err == nil {
				t.Fatal("second Close succeeded")
			}
		})
	}
}

// TestCloseUnresponsivePeer: Close must end a connection whose peer never
// answers the close frame.
func TestCloseUnresponsivePeer(t *testing.T) {
	opened := make(chan *Conn, 1)
	closed := make(chan struct{})
	ts := startServer(t, Options{}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnOpen: func(ws *Conn) { opened <- ws }, OnClose: func(*Conn) { close(closed) }}
	})
	rawDial(t, ts.addr, "")
	(<-opened).Close()
	select {
	case <-closed:
	case <-time.After(closeGrace + 3*time.Second):
		t.Fatal("connection not released after the close grace")
	}
}

func TestShutdown(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			var mu sync.Mutex
			var order []string
			ts := startServer(t, m.opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{
					OnShutdown: func(ws *Conn) { mu.Lock(); order = append(order, fmt.Sprint("shutdown ", ws.UUID())); mu.Unlock() },
					OnClose:    func(ws *Conn) { mu.Lock(); order = append(order, fmt.Sprint("close ", ws.UUID())); mu.Unlock() },
				}
			})
			var clients []*websocket.Conn
			for range 3 {
				c, _ := dial(t, ts.url(), nil)
				clients = append(clients, c)
			}
			codes := make(chan websocket.StatusCode, 3)
			for _, c := range clients {
				go func() { codes <- closeCode(t, c) }()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := ts.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			for range clients {
				if code := <-codes; code != CloseGoingAway {
					t.Fatalf("client close code %d, want 1001", code)
				}
			}
			mu.Lock()
			events := append([]string(nil), order...)
			mu.Unlock()
			order = events
			if len(order) != 6 {
				t.Fatalf("events %q", order)
			}
			for _, e := range order {
				if strings.HasPrefix(e, "close ") {
					if i := indexOf(order, "shutdown "+strings.TrimPrefix(e, "close ")); i < 0 || i > indexOf(order, e) {
						t.Fatalf("OnClose before OnShutdown: %q", order)
					}
				}
			}
			// After shutdown, upgrades are refused with 503.
			_, resp, err := websocket.Dial(context.Background(), ts.url(), nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("upgrade after Shutdown: %v %v", resp, err)
			}
		})
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func TestBadUpgrades(t *testing.T) {
	var closes atomic.Int32
	ts := startServer(t, Options{}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnClose: func(ws *Conn) {
			// OnClose after a failed upgrade may log the peer (a nil
			// address here once panicked every embedding program).
			if ws.RemoteAddr() == nil {
				t.Errorf("failed upgrade has no remote address")
			}
			if err := ws.Write([]byte("x"), true); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after a failed upgrade = %v, want ErrClosed", err)
			}
			closes.Add(1)
		}}
	})
	good := map[string]string{
		"Upgrade": "websocket", "Connection": "Upgrade",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
	}
	for _, tc := range []struct {
		name   string
		method string
		change map[string]string
		status int
	}{
		{"plain GET", "GET", map[string]string{"Upgrade": "", "Connection": ""}, 400},
		{"missing key", "GET", map[string]string{"Sec-WebSocket-Key": ""}, 400},
		{"key not 16 bytes", "GET", map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}, 400},
		{"version 8", "GET", map[string]string{"Sec-WebSocket-Version": "8"}, 426},
		{"no version", "GET", map[string]string{"Sec-WebSocket-Version": ""}, 426},
		{"POST", "POST", nil, 405},
		{"foreign origin", "GET", map[string]string{"Origin": "http://evil.example"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := closes.Load()
			req, _ := http.NewRequest(tc.method, "http://"+ts.addr+"/", nil)
			for k, v := range good {
				req.Header.Set(k, v)
			}
			for k, v := range tc.change {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatal("426 without Sec-WebSocket-Version: 13")
			}
			waitFor(t, "OnClose for the failed upgrade", 2*time.Second, func() bool { return closes.Load() == before+1 })
		})
	}
}

// TestPeerCloseRightAfterData: data and the peer's end arriving under one
// readiness edge must still end the connection.
func TestPeerCloseRightAfterData(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ts := startServer(t, m.opts, echoSettings)
			for range 200 {
				rc := rawDial(t, ts.addr, "")
				rc.writeFrame(t, true, opPong, nil)
				rc.Close()
			}
			waitFor(t, "every connection to end", 5*time.Second, func() bool { return ts.Count() == 0 })
		})
	}
}

// TestBackpressureCountsRefusedBytesOnly: a burst of prepared messages to a
// peer that reads must not trip the limit just because the queue waits
// for a worker.
func TestBackpressureCountsRefusedBytesOnly(t *testing.T) {
	opened := make(chan *Conn, 1)
	ts := startServer(t, Options{MaxBackpressure: 64 << 10}, func(*fasthttp.RequestCtx) Settings {
		return Settings{OnOpen: func(ws *Conn) { opened <- ws }}
	})
	c, _ := dial(t, ts.url(), nil)
	ws := <-opened
	msg := bytes.Repeat([]byte("x"), 8<<10)
	const n = 400 // 3.2 MB in all, 50 times the limit
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for range n {
			if _, _, err := c.Read(ctx); err != nil {
				got <- err
				return
			}
		}
		got <- nil
	}()
	for i := range n {
		pm := NewPreparedMessage(msg, false)
		err := ws.WritePrepared(pm)
		pm.Release()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i%8 == 7 {
			time.Sleep(time.Millisecond) // a fast sender, not a flood
		}
	}
	if err := <-got; err != nil {
		t.Fatalf("reader: %v", err)
	}
}

// TestCallbackPanic: a panicking callback ends its own connection with 1011
// and nothing else; the process and the other connections go on.
func TestCallbackPanic(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			ts := startServer(t, opts, func(*fasthttp.RequestCtx) Settings {
				return Settings{OnMessage: func(ws *Conn, data []byte, isText bool) {
					if string(data) == "boom" {
						panic("user bug")
					}
					ws.Write(data, isText)
				}}
			})
			good, _ := dial(t, ts.url(), nil)
			bad, _ := dial(t, ts.url(), nil)
			ctx := context.Background()
			bad.Write(ctx, websocket.MessageText, []byte("boom"))
			if code := closeCode(t, bad); code != CloseInternalError {
				t.Fatalf("close code %d, want 1011", code)
			}
			good.Write(ctx, websocket.MessageText, []byte("still here"))
			if _, msg, err := good.Read(ctx); err != nil || string(msg) != "still here" {
				t.Fatalf("other connection after a panic: %q %v", msg, err)
			}
			// An Each task is user code run for its connection: a panic
			// there ends that connection, and onFinish's panic is logged.
			ts.Each(nil, func(*Conn, any) { panic("task bug") }, nil, func(*Conn, any) { panic("finish bug") })
			if code := closeCode(t, good); code != CloseInternalError {
				t.Fatalf("close code %d after a panicking task, want 1011", code)
			}
			fresh, _ := dial(t, ts.url(), nil)
			fresh.Write(ctx, websocket.MessageText, []byte("after Each"))
			if _, msg, err := fresh.Read(ctx); err != nil || string(msg) != "after Each" {
				t.Fatalf("new connection after a panicking Each: %q %v", msg, err)
			}
		})
	}
}
