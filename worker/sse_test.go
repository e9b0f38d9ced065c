package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wsd-server/wsd/internal/memconn"
	"github.com/wsd-server/wsd/wsext"
)

// errEOF is how an SSE stream that ended cleanly (with the last chunk)
// reads; one cut short reads io.ErrUnexpectedEOF.
var errEOF = io.EOF

// sseEvent is one dispatched event, or one comment line.
type sseEvent struct {
	event, data string
	id          string
	comment     string
	isComment   bool
}

func (e sseEvent) String() string {
	if e.isComment {
		return fmt.Sprintf("comment %q", e.comment)
	}
	return fmt.Sprintf("event %q data %q", e.event, e.data)
}

// sseClient reads an event stream with net/http, as a plain client would.
type sseClient struct {
	resp   *http.Response
	items  chan sseEvent
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
}

// openSSE GETs path and starts reading its events; the stream is closed
// when the test ends.
func openSSE(t testing.TB, s *serving, path string, header http.Header) *sseClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url("http", path), nil)
	if header != nil {
		req.Header = header
	}
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	c := &sseClient{resp: resp, items: make(chan sseEvent, 1024), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close(); tr.CloseIdleConnections() })
	go c.read()
	return c
}

// read parses the stream (the server ends lines with LF only).
func (c *sseClient) read() {
	defer close(c.items)
	br := bufio.NewReader(c.resp.Body)
	var ev sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != nil {
				ev.data = strings.Join(data, "\n")
				c.items <- ev
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
			c.items <- sseEvent{isComment: true, comment: strings.TrimPrefix(line[1:], " ")}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "data":
				data = append(data, value)
			case "event":
				ev.event = value
			case "id":
				ev.id = value
			}
		}
	}
}

// nextAny returns the next event or comment, or the error that ended the
// stream.
func (c *sseClient) nextAny(d time.Duration) (sseEvent, error) {
	select {
	case ev, ok := <-c.items:
		if !ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			return sseEvent{}, c.err
		}
		return ev, nil
	case <-time.After(d):
		return sseEvent{}, fmt.Errorf("no event in %s", d)
	}
}

// next returns the next event, skipping comments.
func (c *sseClient) next(d time.Duration) (sseEvent, error) {
	deadline := time.Now().Add(d)
	for {
		ev, err := c.nextAny(time.Until(deadline))
		if err != nil || !ev.isComment {
			return ev, err
		}
	}
}

// hello reads the comment every stream begins with.
func (c *sseClient) hello(t testing.TB) {
	t.Helper()
	ev, err := c.nextAny(10 * time.Second)
	if err != nil || !ev.isComment || ev.comment != "ok" {
		t.Fatalf("first line: %v, %v; want the ok comment", ev, err)
	}
}

func post(t testing.TB, s *serving, channel, body, contentType string) {
	t.Helper()
	resp, err := httpClient(t).Post(s.url("http", "/publish/"+channel), contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 200 with the position when the channel keeps history.
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /publish/%s: %s", channel, resp.Status)
	}
}

// TestSSEDelivery: a stream gets POSTed and WebSocket-published messages
// in order, text split into data lines and binary in base64, with the
// headers a stream needs; the gauge counts it.
func TestSSEDelivery(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := serveOpts(t, testConfig(), Options{Metrics: reg})
	c := openSSE(t, s, "/sse/news", nil)
	for name, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-store",
		"X-Accel-Buffering": "no",
	} {
		if got := c.resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	c.hello(t)
	if g := sample(t, reg, "wsd_sse_subscribers"); g != 1 {
		t.Errorf("wsd_sse_subscribers = %v, want 1", g)
	}

	post(t, s, "news", "one", "text/plain")
	post(t, s, "news", "two\nlines", "text/plain")
	post(t, s, "news", "crlf\r\nand\rcr\n", "text/plain")
	post(t, s, "news", "", "text/plain")
	post(t, s, "news", "\x00\x01\xfe", "application/octet-stream")
	ws, _ := wsDial(t, s.url("ws", "/pubsub/news"), nil)
	writeMsg(t, ws, websocket.MessageText, []byte("from ws 1"))
	writeMsg(t, ws, websocket.MessageBinary, []byte("from ws 2"))
	post(t, s, "other", "not for news", "text/plain")

	want := []sseEvent{
		{data: "one"},
		{data: "two\nlines"},
		{data: "crlf\nand\ncr\n"},
		{data: ""},
		{event: "binary", data: base64.StdEncoding.EncodeToString([]byte("\x00\x01\xfe"))},
		{data: "from ws 1"},
		{event: "binary", data: base64.StdEncoding.EncodeToString([]byte("from ws 2"))},
	}
	for i, w := range want {
		got, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got != w {
			t.Errorf("event %d: %v, want %v", i, got, w)
		}
	}

	// The client goes, and the worker notices before the next heartbeat
	// (15 s).
	c.cancel()
	waitUntil(t, "the stream's end", 10*time.Second, func() bool {
		return s.sse.Count() == 0 && s.WebSocket().FuncSubscribers("news") == 0
	})
	if g := sample(t, reg, "wsd_sse_subscribers"); g != 0 {
		t.Errorf("wsd_sse_subscribers = %v, want 0", g)
	}
}

// TestSSEHeartbeat: the comment comes every --sse-heartbeat.
func TestSSEHeartbeat(t *testing.T) {
	cfg := testConfig()
	cfg.SSEHeartbeat = 200 * time.Millisecond
	s := serve(t, cfg)
	c := openSSE(t, s, "/sse/quiet", nil)
	c.hello(t)
	start := time.Now()
	for i := range 3 {
		ev, err := c.nextAny(10 * time.Second)
		if err != nil || !ev.isComment || ev.comment != "heartbeat" {
			t.Fatalf("line %d: %v, %v; want a heartbeat", i, ev, err)
		}
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("three heartbeats in %s, faster than every 200ms", d)
	}
}

// linkedEngines join two workers as the cluster engine would: a publish in
// one reaches the other's subscribers.
type linkedEngine struct {
	mu      sync.Mutex
	peer    *linkedEngine
	deliver func(string, []byte, bool)
	subs    map[string]bool
}

func linkedEngines() (*linkedEngine, *linkedEngine) {
	a, b := &linkedEngine{subs: map[string]bool{}}, &linkedEngine{subs: map[string]bool{}}
	a.peer, b.peer = b, a
	return a, b
}

func (e *linkedEngine) Start(d func(string, []byte, bool)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deliver = d
	return nil
}

func (e *linkedEngine) Publish(ch string, data []byte, isText bool) error {
	p := e.peer
	p.mu.Lock()
	d, ok := p.deliver, p.subs[ch]
	p.mu.Unlock()
	if ok && d != nil {
		d(ch, data, isText)
	}
	return nil
}

func (e *linkedEngine) Subscribe(ch string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs[ch] = true
	return nil
}

func (e *linkedEngine) Unsubscribe(ch string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.subs, ch)
	return nil
}

func (e *linkedEngine) Close() error { return nil }

func (e *linkedEngine) subscribed(ch string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subs[ch]
}

var _ wsext.Engine = (*linkedEngine)(nil)

// TestSSEAcrossWorkers: a stream on one worker gets what is published on
// another, by POST and by WebSocket, through the engine; the engine
// subscription follows the stream.
func TestSSEAcrossWorkers(t *testing.T) {
	engA, engB := linkedEngines()
	cfg := testConfig()
	a := serveOpts(t, cfg, Options{Engine: engA})
	b := serveOpts(t, cfg, Options{Engine: engB})
	c := openSSE(t, a, "/sse/room", nil)
	c.hello(t)
	if !engA.subscribed("room") {
		t.Fatal("the engine does not subscribe for the stream")
	}
	post(t, b, "room", "by post", "text/plain")
	ws, _ := wsDial(t, b.url("ws", "/pubsub/room"), nil)
	writeMsg(t, ws, websocket.MessageText, []byte("by websocket"))
	for _, want := range []string{"by post", "by websocket"} {
		ev, err := c.next(10 * time.Second)
		if err != nil || ev.data != want {
			t.Fatalf("got %v, %v; want %q", ev, err, want)
		}
	}
	c.cancel()
	waitUntil(t, "the engine's unsubscription", 10*time.Second, func() bool { return !engA.subscribed("room") })
}

// TestSSESlowReader: a stream whose reader does not read is closed once
// --max-backpressure bytes wait for it, and its subscription dropped; a
// reader that keeps up gets every message meanwhile.
func TestSSESlowReader(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	cfg := testConfig()
	cfg.MaxBackpressure = 64 << 10
	s := serveOpts(t, cfg, Options{Metrics: reg})

	stuck, err := smallBufferDialer.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "GET /sse/flood HTTP/1.1\r\nHost: %s\r\n\r\n", s.addr)
	good := openSSE(t, s, "/sse/flood", nil)
	good.hello(t)
	waitUntil(t, "both streams", 5*time.Second, func() bool { return s.WebSocket().FuncSubscribers("flood") == 2 })

	msg := bytes.Repeat([]byte("x"), 8<<10)
	sent := 0
	// 32 MiB at most: far past the kernel's buffers and the allowance.
	for ; sent < 4096 && s.sse.overflows.Load() == 0; sent++ {
		if err := s.WebSocket().Publish("flood", msg, true); err != nil {
			t.Fatal(err)
		}
		ev, err := good.next(10 * time.Second)
		if err != nil || len(ev.data) != len(msg) {
			t.Fatalf("good reader, message %d: %d bytes, %v", sent, len(ev.data), err)
		}
	}
	if s.sse.overflows.Load() != 1 {
		t.Fatalf("no overflow after %d messages of %d bytes", sent, len(msg))
	}
	waitUntil(t, "the stuck stream's end", 10*time.Second, func() bool {
		return s.sse.Count() == 1 && s.WebSocket().FuncSubscribers("flood") == 1
	})
	if got := sample(t, reg, "wsd_sse_backpressure_closes_total"); got != 1 {
		t.Errorf("wsd_sse_backpressure_closes_total = %v, want 1", got)
	}
	// The good stream still works.
	s.WebSocket().Publish("flood", []byte("after"), true)
	if ev, err := good.next(10 * time.Second); err != nil || ev.data != "after" {
		t.Errorf("good reader after the overflow: %v, %v", ev, err)
	}
}

// TestSSEShutdown: a worker's shutdown ends its streams cleanly, after what
// was queued, and removes their subscriptions; Shutdown does not wait for
// its timeout.
func TestSSEShutdown(t *testing.T) {
	cfg := testConfig()
	w, err := New(cfg, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- w.Serve(ln) }()
	s := &serving{Worker: w, addr: ln.Addr().String()}
	c := openSSE(t, s, "/sse/bye", nil)
	c.hello(t)
	w.WebSocket().Publish("bye", []byte("last words"), true)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := w.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(start); d > sseGrace {
		t.Errorf("shutdown took %s", d)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if ev, err := c.next(10 * time.Second); err != nil || ev.data != "last words" {
		t.Errorf("got %v, %v; want the queued message", ev, err)
	}
	if _, err := c.next(10 * time.Second); !errors.Is(err, errEOF) {
		t.Errorf("after the last message: %v, want a clean end (EOF)", err)
	}
	if n := w.WebSocket().FuncSubscribers("bye"); n != 0 || w.sse.Count() != 0 {
		t.Errorf("%d subscriptions, %d streams left", n, w.sse.Count())
	}
}

// TestSSEMaxConns: streams count against --max-conns, and give their
// place back when they end.
func TestSSEMaxConns(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConns = 2
	s := serve(t, cfg)
	c1 := openSSE(t, s, "/sse/a", nil)
	c1.hello(t)
	c2 := openSSE(t, s, "/sse/a", nil)
	c2.hello(t)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(s.url("http", "/sse/a"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a third connection: %s, want 503", resp.Status)
	}
	c1.cancel()
	waitUntil(t, "the slot back", 10*time.Second, func() bool { return s.limit.Open() < 2 })
	c3 := openSSE(t, s, "/sse/a", nil)
	c3.hello(t)
}

// TestSSEInputEnds: a client whose side of the connection ends (EOF) is
// gone, so the stream ends and fasthttp's ServeConn returns, as FuzzUpgrade
// requires of every input.
func TestSSEInputEnds(t *testing.T) {
	w, err := New(testConfig(), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"GET /sse/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /sse/x HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		done := make(chan error, 1)
		go func() { done <- w.http.ServeConn(memconn.New([]byte(in))) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: ServeConn did not return", in)
		}
	}
	waitUntil(t, "no stream left", 5*time.Second, func() bool { return w.sse.Count() == 0 })
}

func TestSSEBadRequests(t *testing.T) {
	s := serve(t, testConfig())
	client := httpClient(t)
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/sse/x", http.StatusMethodNotAllowed},
		{"HEAD", "/sse/x", http.StatusMethodNotAllowed},
		{"GET", "/sse/", http.StatusBadRequest},
		{"GET", "/sse/a%20b", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(tt.method, s.url("http", tt.path), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %s, want %d", tt.method, tt.path, resp.Status, tt.status)
		}
	}
}

// parseSSE reads a stream as the HTML Standard's event stream parser does
// (section 9.2.6): lines end with CRLF, LF or CR; it returns the data of
// each dispatched event, and its type.
func parseSSE(b []byte) (events []sseEvent) {
	var data strings.Builder
	var typ string
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			break // an incomplete line is not processed
		}
		line := string(b[:i])
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
		switch {
		case line == "":
			if data.Len() > 0 {
				d := strings.TrimSuffix(data.String(), "\n")
				events = append(events, sseEvent{event: typ, data: d})
			}
			data.Reset()
			typ = ""
		case line[0] == ':':
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "data":
				data.WriteString(value)
				data.WriteByte('\n')
			case "event":
				typ = value
			}
		}
	}
	return events
}

// FuzzSSEEvent checks the encoding against the standard's parser: a text
// message arrives with its line ends made LF, a binary one as its base64.
func FuzzSSEEvent(f *testing.F) {
	for _, s := range []string{"", "a", "a\nb", "a\r\nb", "a\rb", "\n", "\r\n\r\n", "x\n\n", ": not a comment", "data: x"} {
		f.Add([]byte(s), true)
	}
	f.Add([]byte{0, 0xff}, false)
	f.Fuzz(func(t *testing.T, data []byte, isText bool) {
		enc := appendEvent([]byte(": ok\n\n"), wsext.Position{}, data, isText)
		evs := parseSSE(enc)
		if len(evs) != 1 {
			t.Fatalf("%q encodes as %q: %d events", data, enc, len(evs))
		}
		want := sseEvent{data: strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))}
		if !isText {
			want = sseEvent{event: "binary", data: base64.StdEncoding.EncodeToString(data)}
		}
		if evs[0] != want {
			t.Fatalf("%q encodes as %q, read back as %v, want %v", data, enc, evs[0], want)
		}
	})
}

// TestSSEResume: with history, a stream that comes back with the last id it
// saw (Last-Event-ID, as EventSource sends it, or ?last_event_id=) gets
// what was published meanwhile, then the live events, each once; one that
// cannot be served is told so in its status event.
func TestSSEResume(t *testing.T) {
	cfg := testConfig()
	cfg.Processes = 1
	cfg.HistorySize = 100
	s := serve(t, cfg)
	status := func(c *sseClient) (st struct {
		Offset    uint64
		Epoch     string
		Recovered bool
		Replayed  int
	}) {
		t.Helper()
		ev, err := c.next(10 * time.Second)
		if err != nil || ev.event != "status" || json.Unmarshal([]byte(ev.data), &st) != nil {
			t.Fatalf("first event %v, %v: want the status", ev, err)
		}
		return st
	}
	first := openSSE(t, s, "/sse/news", nil)
	first.hello(t)
	status(first)
	for i := 1; i <= 3; i++ {
		post(t, s, "news", fmt.Sprint(i), "text/plain")
	}
	var last sseEvent
	for i := 1; i <= 3; i++ {
		ev, err := first.next(10 * time.Second)
		if err != nil || ev.data != fmt.Sprint(i) || !strings.HasSuffix(ev.id, fmt.Sprintf(":%d", i)) {
			t.Fatalf("event %d: %v, %v", i, ev, err)
		}
		last = ev
	}
	first.cancel()
	for i := 4; i <= 5; i++ {
		post(t, s, "news", fmt.Sprint(i), "text/plain")
	}
	for _, how := range []string{"header", "query"} {
		t.Run(how, func(t *testing.T) {
			path, h := "/sse/news", http.Header{}
			if how == "header" {
				h.Set("Last-Event-ID", last.id)
			} else {
				path += "?last_event_id=" + url.QueryEscape(last.id)
			}
			back := openSSE(t, s, path, h)
			back.hello(t)
			if st := status(back); !st.Recovered || st.Replayed < 2 {
				t.Fatalf("status %+v, want recovered with the missed events", st)
			}
			for i := 4; i <= 5; i++ {
				if ev, err := back.next(10 * time.Second); err != nil || ev.data != fmt.Sprint(i) {
					t.Fatalf("replayed event %d: %v, %v", i, ev, err)
				}
			}
		})
	}
	h := http.Header{}
	h.Set("Last-Event-ID", "gone:2")
	stale := openSSE(t, s, "/sse/news", h)
	stale.hello(t)
	if st := status(stale); st.Recovered || st.Replayed != 0 {
		t.Fatalf("status for another epoch %+v, want not recovered", st)
	}
}
