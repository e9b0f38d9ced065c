package worker

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/wsext"
)

// GET /sse/{channel} streams a channel's messages as Server-Sent Events
// (text/event-stream), for clients that only listen: EventSource in a
// browser, curl. The stream subscribes through the worker's wsext Server,
// so it gets every message published on the channel, by POST /publish or
// by a /pubsub WebSocket, in any worker or host, in the order each
// publisher published them.
//
// The stream:
//
//	: ok                      a comment at once, so that the client has
//	                          the headers without waiting for a message
//	data: <line>              one per line of a text message (CR, LF and
//	data: <line>              CRLF all end a line, as EventSource reads
//	                          them); a blank line ends the event
//	event: binary             a binary message, base64 (standard, padded)
//	data: <base64>
//	: heartbeat               every --sse-heartbeat (15 s), for proxies
//	                          and to notice a client that vanished
//	event: expired            the token expired (then the stream ends)
//	data: token expired
//	event: join               with --presence and ?presence=1: a
//	data: {"presence":"join","channel":"room","client":"…","user":"alice"}
//	event: leave              subscriber joined or left the channel
//	data: {"presence":"leave",…}
//
// With --history-size, every event carries `id: <epoch>:<offset>`, its
// position in the channel's history, and the stream opens with
//
//	event: status
//	id: <epoch>:<offset>      the channel's position now
//	data: {"offset":42,"epoch":"5f0c2a9d31e4","recovered":true,"replayed":3}
//
// A client that reconnects sends the last id it saw as Last-Event-ID (what
// EventSource does by itself), or as ?last_event_id=…; the stream then
// first replays what was published after it, then the live messages: no
// gap, no duplicate. "recovered":false says that could not be done (another
// epoch, or older than what is kept): reload the state, then go on. Without
// history events carry no id (a per-stream counter would make browsers
// send a Last-Event-ID that means nothing to the next stream).
//
// A client that closes the connection (or sends anything on it) ends its
// stream at once: the stream reads the connection meanwhile (watch).
//
// A stream counts against --max-conns like any connection. What waits for
// a slow reader is bounded by --max-backpressure (events queued, plus the
// batch being written): past it the queue is dropped and the connection
// closed, as a WebSocket would be. At a worker's shutdown every stream
// sends what it has queued and ends; one whose reader does not read is
// closed after sseGrace.
var ssePrefix = []byte("/sse/")

// sseGrace is how long a stream that should end may take to send what it
// has before its connection is closed, as wsext allows a closing handshake.
const sseGrace = 3 * time.Second

// Why a stream ends.
const (
	sseRunning  = iota
	sseShutdown // the worker stops
	sseExpired  // the token expired
	sseOverflow // the reader fell --max-backpressure behind
	sseGone     // the client closed the connection, or sent on it
	sseResume   // too much arrived during a recovery: the client resumes
)

// sseHub holds a worker's streams, to end them at shutdown.
type sseHub struct {
	mu      sync.Mutex
	stopped bool
	streams map[*sseStream]struct{}

	overflows atomic.Uint64 // streams closed for --max-backpressure
}

func newSSEHub() *sseHub { return &sseHub{streams: make(map[*sseStream]struct{})} }

// add registers s, or reports false after shutdown began.
func (h *sseHub) add(s *sseStream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	h.streams[s] = struct{}{}
	return true
}

func (h *sseHub) remove(s *sseStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.streams, s)
}

// Count returns the streams open now.
func (h *sseHub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

// shutdown ends every stream and refuses new ones.
func (h *sseHub) shutdown() {
	h.mu.Lock()
	h.stopped = true
	streams := make([]*sseStream, 0, len(h.streams))
	for s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	for _, s := range streams {
		s.end(sseShutdown)
	}
}

// sseStream is one /sse subscriber. The subscription's function (push)
// encodes each message into buf on the publisher's goroutine; the
// stream's writer, on fasthttp's stream goroutine, takes buf whole and
// writes it.
type sseStream struct {
	hub   *sseHub
	conn  net.Conn
	limit int // --max-backpressure
	wake  chan struct{}
	sub   *wsext.Subscription
	exp   expiry

	mu      sync.Mutex
	buf     []byte // events not yet taken by the writer
	writing int    // bytes of the batch the writer is sending
	state   int    // sseRunning, or why the stream ends
	grace   *time.Timer
	done    bool // the writer returned
}

func newSSEStream(h *sseHub, conn net.Conn, limit int) *sseStream {
	return &sseStream{hub: h, conn: conn, limit: limit, wake: make(chan struct{}, 1)}
}

// push queues a message: the function given to SubscribeFuncWith. It
// never blocks.
func (s *sseStream) push(pos wsext.Position, data []byte, isText bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != sseRunning {
		return
	}
	queued := len(s.buf) + s.writing
	s.buf = appendEvent(s.buf, pos, data, isText)
	// An empty queue takes one message of any size, as wsext's does.
	if queued > 0 && len(s.buf)+s.writing > s.limit {
		s.state = sseOverflow
		s.buf = nil
		s.hub.overflows.Add(1)
		// The writer may be stuck in a write the reader does not take:
		// closing the connection ends it. The connection serves nothing
		// after the stream (Connection: close).
		s.conn.Close()
	}
	s.signal()
}

// pushPresence queues a join or leave event: the OnPresence function.
func (s *sseStream) pushPresence(ev wsext.PresenceEvent) {
	data, _ := json.Marshal(ev)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != sseRunning {
		return
	}
	s.buf = append(s.buf, "event: "...)
	s.buf = append(s.buf, ev.Presence...)
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	s.signal()
}

func (s *sseStream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// end asks the writer to send what is queued and stop; a writer still
// writing after sseGrace has its connection closed.
func (s *sseStream) end(why int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != sseRunning || s.done {
		return
	}
	s.state = why
	s.grace = time.AfterFunc(sseGrace, func() { s.conn.Close() })
	s.signal()
}

// Events the stream writes itself.
var (
	sseHello     = []byte(": ok\n\n")
	sseHeartbeat = []byte(": heartbeat\n\n")
	sseExpiredEv = []byte("event: expired\ndata: token expired\n\n")
)

// run writes the stream until it ends or a write fails (the client went
// away); it is the response's body stream writer.
func (s *sseStream) run(bw *bufio.Writer, heartbeat time.Duration) {
	defer s.finish()
	go s.watch()
	if _, err := bw.Write(sseHello); err != nil || bw.Flush() != nil {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	var out []byte
	for {
		beat := false
		select {
		case <-s.wake:
		case <-tick.C:
			beat = true
		}
		s.mu.Lock()
		state := s.state
		out, s.buf = s.buf, out[:0]
		s.writing = len(out)
		s.mu.Unlock()
		if state == sseOverflow {
			return
		}
		bw.Write(out)
		if beat {
			bw.Write(sseHeartbeat)
		}
		if state == sseExpired {
			bw.Write(sseExpiredEv)
		}
		if bw.Flush() != nil {
			return
		}
		s.mu.Lock()
		s.writing = 0
		s.mu.Unlock()
		if state != sseRunning {
			return
		}
		// A burst's buffer is not kept by an idle stream.
		if cap(out) > 64<<10 {
			out = nil
		}
	}
}

// watch reads the connection while the stream runs, as net/http does for
// a request's context, so that a client that closes it is gone at once
// rather than at the next heartbeat. A client has nothing to send on an
// event stream: data, EOF or an error all end it. fasthttp reads nothing
// more from the connection (the response has Connection: close) and closes
// it after the stream, which ends this read.
func (s *sseStream) watch() {
	// fasthttp's read deadline for the request is still set.
	s.conn.SetReadDeadline(time.Time{})
	var b [1]byte
	s.conn.Read(b[:])
	s.end(sseGone)
}

// finish removes the stream: from its channel, from the hub, from the
// timers.
func (s *sseStream) finish() {
	s.mu.Lock()
	s.done = true
	if s.state == sseRunning {
		s.state = sseShutdown // push queues nothing more
	}
	if s.grace != nil {
		s.grace.Stop()
	}
	s.buf = nil
	s.mu.Unlock()
	s.exp.stop()
	if s.sub != nil {
		s.sub.Unsubscribe()
	}
	s.hub.remove(s)
}

// appendEvent appends a message as one event: a text message as data
// lines, split where EventSource splits them; a binary one base64-encoded
// with event: binary. A message with a position (history is on) carries
// it as the event's id.
func appendEvent(b []byte, pos wsext.Position, data []byte, isText bool) []byte {
	if pos.Epoch != "" {
		b = appendEventID(b, pos)
	}
	if !isText {
		b = append(b, "event: binary\ndata: "...)
		b = base64.StdEncoding.AppendEncode(b, data)
		return append(b, "\n\n"...)
	}
	for {
		i := 0
		for i < len(data) && data[i] != '\n' && data[i] != '\r' {
			i++
		}
		b = append(b, "data: "...)
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if i == len(data) {
			return append(b, '\n')
		}
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

// serveSSE takes GET /sse/{channel}.
func (w *Worker) serveSSE(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() {
		ctx.Error("405 Method Not Allowed: subscribe with GET\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set("Allow", "GET")
		return
	}
	channel, ok := channelOf(ctx, ssePrefix)
	if !ok {
		return
	}
	g, ok := w.authorize(ctx, channel)
	if !ok {
		return
	}
	events, ok := presenceQuery(ctx)
	if !ok {
		return
	}
	wantEvents := events && w.cfg.Presence
	s := newSSEStream(w.sse, ctx.Conn(), w.cfg.MaxBackpressure)
	if !w.sse.add(s) {
		ctx.Error("503 Service Unavailable: shutting down\n", fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", "1")
		return
	}
	var since *wsext.Position
	lastID := string(ctx.Request.Header.Peek("Last-Event-ID"))
	if lastID == "" {
		lastID = string(ctx.QueryArgs().Peek("last_event_id"))
	}
	if pos, ok := parseEventID(lastID); ok {
		since = &pos
	}
	opts := wsext.SubscribeOptions{Since: since}
	if w.cfg.Presence {
		user, ok := w.presenceUser(ctx, g)
		if !ok {
			w.sse.remove(s)
			return
		}
		opts.Presence = &wsext.Member{User: user}
	}
	if wantEvents {
		opts.OnPresence = s.pushPresence
	}
	sub, rec, err := w.ws.SubscribeFuncWith(channel, s.push, opts)
	overflow := errors.Is(err, wsext.ErrRecoveryOverflow)
	if errors.Is(err, wsext.ErrNoHistory) || overflow {
		err = nil // not recovered, which the status says; an overflow ends the stream below
	}
	if err != nil {
		sub.Unsubscribe()
		w.sse.remove(s)
		w.rlog.Error("sse subscribe", "pub/sub: subscribing an SSE stream", "channel", channel, "err", err)
		ctx.Error("503 Service Unavailable: pub/sub unavailable\n", fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", "1")
		return
	}
	s.sub = sub
	if w.cfg.HistorySize > 0 || since != nil {
		// Before the replayed and live events: nothing is written before
		// the body stream writer runs, after this handler.
		s.mu.Lock()
		s.buf = append(statusEvent(rec), s.buf...)
		s.mu.Unlock()
		s.signal()
	}
	s.exp.start(g, func() {
		w.auth.expired.Add(1)
		s.end(sseExpired)
	})
	if overflow {
		// What arrived during the recovery did not fit: the stream ends
		// after what it has, and EventSource comes back with the last id.
		s.end(sseResume)
	}
	h := &ctx.Response.Header
	h.SetContentType("text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	// The connection ends with the stream: it may be closed under a slow
	// reader, and must never be reused after.
	ctx.SetConnectionClose()
	heartbeat := w.cfg.SSEHeartbeat
	if heartbeat <= 0 {
		heartbeat = config.Default().SSEHeartbeat
	}
	ctx.SetBodyStreamWriter(func(bw *bufio.Writer) { s.run(bw, heartbeat) })
}

// appendEventID appends the id line of a position: <epoch>:<offset>.
func appendEventID(b []byte, pos wsext.Position) []byte {
	b = append(b, "id: "...)
	b = append(b, pos.Epoch...)
	b = append(b, ':')
	b = strconv.AppendUint(b, pos.Offset, 10)
	return append(b, '\n')
}

// parseEventID reads an id written by appendEventID; ok is false for
// anything else, which resumes nothing.
func parseEventID(id string) (pos wsext.Position, ok bool) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return pos, false
	}
	offset, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return pos, false
	}
	return wsext.Position{Offset: offset, Epoch: id[:i]}, true
}

// statusEvent is the first event of a stream with history: where the
// channel stands, and whether what was missed follows.
func statusEvent(rec wsext.Recovery) []byte {
	b := []byte("event: status\n")
	if rec.Top.Epoch != "" {
		b = appendEventID(b, rec.Top)
	}
	b = fmt.Appendf(b, "data: {\"offset\":%d,\"epoch\":%q,\"recovered\":%t,\"replayed\":%d}\n\n",
		rec.Top.Offset, rec.Top.Epoch, rec.Recovered, rec.Replayed)
	return b
}
