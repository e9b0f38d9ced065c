package wsext

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/wsd-server/wsd/wsext/internal/poller"
)

const (
	stateOpen    int32 = iota // messages flow both ways
	stateClosing              // our close frame is queued; waiting for the peer's
	stateClosed               // finished: network connection released, OnClose called
)

// Conn is one WebSocket connection (the spec's ws_s). Its methods are safe
// to call from any goroutine.
type Conn struct {
	srv      *Server
	settings Settings
	uuid     uint64

	udataMu sync.Mutex
	udata   any

	// cbMu is held while a callback or an Each task runs for this
	// connection, which serialises them.
	cbMu     sync.Mutex
	attached bool // a network connection is behind this Conn (false after a failed upgrade)
	state    atomic.Int32

	// The network side (see transport.go): t, and fd >= 0 for a
	// connection on an event loop,
	// otherwise raw is written and the hijack goroutine reads.
	t           transport
	fd          int
	raw         net.Conn
	remote      net.Addr
	subprotocol string

	// Write side, under wmu.
	wmu       sync.Mutex
	q         outQueue
	inflight  int  // bytes a stream flusher is writing outside wmu
	flushing  bool // a stream flusher goroutine is running
	wclosed   bool // nothing more may be written
	closeSent bool // our close frame is queued
	shutWr    bool // write side shut down after the close frame

	peerClosed atomic.Bool // the peer's close frame arrived

	pe     poller.Entry // the poller's state for a polled connection
	missed atomic.Bool  // a loop skipped a turn because cbMu was held (see unlock)

	// Timing, in nanoseconds of the server's monotonic clock (Server.mono).
	// The hot paths only set active; the reaper turns it into lastActive
	// when it next looks, so a ping is never early, at most a tick late.
	timeout    int64        // idle time before a ping, fixed when the connection opens
	active     atomic.Bool  // a byte arrived or a message was sent since the reaper looked
	lastActive int64        // the reaper's time when it last saw activity; the reaper's own
	pingAt     atomic.Int64 // when the unanswered ping was sent, 0 if none
	closeBy    atomic.Int64 // in stateClosing, when to give up on the peer

	// Write side bookkeeping beyond the queue, under wmu.
	pongQueued  bool // a pong waits in out: further pings are not answered until it is sent
	drainWanted bool // a write was queued: OnDrain is due when the queue empties

	// Each work addressed to this connection (see each.go), under wmu.
	tasks      *[]taskEntry // nil when empty, so an idle connection holds no queue
	taskRunner bool         // a goroutine runs the tasks of a connection off the poller
	tasksDone  bool         // the connection finished: tasks are no longer queued

	// Each work this connection originated and that is not finished yet;
	// at eachWindow the connection is read no further (see each.go).
	eachOut atomic.Int32
	paused  atomic.Bool   // written under wmu
	wake    chan struct{} // a paused stream reader waits on it, under wmu

	regIdx int
	rs     frameReader
	subs   []string // pub/sub channels, under udataMu
}

// UData returns the connection's user data.
func (c *Conn) UData() any {
	c.udataMu.Lock()
	defer c.udataMu.Unlock()
	return c.udata
}

// SetUData sets the connection's user data and returns the previous value.
func (c *Conn) SetUData(v any) any {
	c.udataMu.Lock()
	defer c.udataMu.Unlock()
	old := c.udata
	c.udata = v
	return old
}

// Server returns the server that owns the connection.
func (c *Conn) Server() *Server { return c.srv }

// UUID returns the connection's identifier: a number unique among the
// connections of this process (upgrades failed included) for the life of
// the process, never reused, assigned in upgrade order from 1. Unlike the
// spec's lib-server UUID it does not encode the file descriptor.
func (c *Conn) UUID() uint64 { return c.uuid }

// RemoteAddr returns the peer's address, also after a failed upgrade.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Compressed reports whether permessage-deflate was negotiated.
func (c *Conn) Compressed() bool { return c.rs.deflate }

func (c *Conn) String() string { return fmt.Sprintf("ws#%d", c.uuid) }

// Write sends data as one message: text when isText (data must then be
// valid UTF-8), binary otherwise. It never blocks on the peer: what the
// socket cannot take at once is queued, and a queue over MaxBackpressure
// fails with ErrBackpressure and closes the connection. It returns
// ErrClosed once the connection is closing or closed.
func (c *Conn) Write(data []byte, isText bool) error {
	op := byte(opBinary)
	if isText {
		if !utf8.Valid(data) {
			return ErrInvalidUTF8
		}
		op = opText
	}
	return c.writeMessage(op, data)
}

func (c *Conn) writeMessage(op byte, data []byte) error {
	if c.rs.deflate && len(data) >= c.srv.opts.CompressionThreshold {
		return c.writeCompressed(op, data)
	}
	var hdr [10]byte
	return c.send(appendHeader(hdr[:0], op, true, false, len(data)), data, frameData)
}

// Close starts the closing handshake with CloseNormal. OnClose follows once
// the peer answers, or after a grace period if it does not.
func (c *Conn) Close() error { return c.CloseWithCode(CloseNormal, "") }

// CloseWithCode starts the closing handshake with the given status code and
// reason (cut to fit a control frame). Code 0 sends a close frame with no
// status.
func (c *Conn) CloseWithCode(code int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed || c.closeSent || !c.attached {
		return ErrClosed
	}
	return c.closeLocked(code, reason)
}

// closeLocked queues our close frame, which ends the data we send.
func (c *Conn) closeLocked(code int, reason string) error {
	c.closeSent = true
	c.state.CompareAndSwap(stateOpen, stateClosing)
	c.closeBy.Store(c.srv.mono() + int64(closeGrace))
	var buf [maxControlPayload + 12]byte
	payload := closePayload(buf[10:10], code, reason)
	hdr := appendHeader(buf[:0], opClose, true, false, len(payload))
	c.srv.stats.closesSent.add(code)
	return c.sendLocked(hdr, payload, frameClose)
}

// What a frame is, for the queue's limits: data counts against
// MaxBackpressure, a control reply too, and the close frame never does
// (it is at most 127 bytes and must be able to follow anything).
type frameKind uint8

const (
	frameData frameKind = iota
	frameControl
	frameClose
)

// send writes one frame (header and payload) or queues it.
func (c *Conn) send(hdr, payload []byte, kind frameKind) error {
	c.wmu.Lock()
	if c.wclosed || c.closeSent || !c.attached {
		c.wmu.Unlock()
		return ErrClosed
	}
	err := c.sendLocked(hdr, payload, kind)
	c.wmu.Unlock()
	return err
}

// sendShared queues a shared frame for the connection's loop to send.
func (c *Conn) sendShared(f *sharedFrame) error {
	c.wmu.Lock()
	if c.wclosed || c.closeSent || !c.attached {
		c.wmu.Unlock()
		return ErrClosed
	}
	before := c.pendingLocked()
	if before > 0 && before+len(f.b) > c.srv.opts.MaxBackpressure {
		// The queue may only be waiting for its loop: give the socket what
		// it takes now, so that only bytes a slow reader refused count.
		if err := c.t.flush(c); err != nil {
			c.wclosed = true
			c.wmu.Unlock()
			c.abort()
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		before = c.pendingLocked()
	}
	if before > 0 && before+len(f.b) > c.srv.opts.MaxBackpressure {
		c.backpressureLocked()
		c.wmu.Unlock()
		return ErrBackpressure
	}
	c.q.pushShared(f)
	c.wantDrainLocked()
	c.sent(frameData, len(f.b))
	if before == 0 {
		// A non-empty queue is already waiting for its loop, its writer
		// or room in the socket; either way it will be flushed.
		c.t.queued(c)
	}
	c.wmu.Unlock()
	return nil
}

func (c *Conn) pendingLocked() int { return c.q.len() + c.inflight }

// BufferedAmount returns the number of bytes written to the connection that
// wait for the peer to read them (the browser API's bufferedAmount, and
// uWebSockets' getBufferedAmount). A writer that keeps it low, waiting for
// Settings.OnDrain, is never closed for backpressure.
func (c *Conn) BufferedAmount() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.pendingLocked()
}

// sendLocked writes at once what the socket takes and queues the rest. An
// empty queue always takes one message whatever its size, so a message
// larger than MaxBackpressure can still reach a reader that keeps up.
func (c *Conn) sendLocked(hdr, payload []byte, kind frameKind) error {
	n := len(hdr) + len(payload)
	before := c.pendingLocked()
	if kind != frameClose && before > 0 && before+n > c.srv.opts.MaxBackpressure {
		c.backpressureLocked()
		return ErrBackpressure
	}
	if before == 0 {
		w, err := c.writeNow(hdr, payload)
		if w == n {
			c.sent(kind, n)
			c.afterFlushLocked()
			return nil
		}
		if writeFailed(err) {
			c.wclosed = true
			c.abort()
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		switch w = max(w, 0); {
		case w == 0:
			c.q.push(hdr, payload)
			c.t.queued(c)
		case w >= len(hdr):
			// The peer has the start of this frame: the queue begins
			// with the rest of it, which must go out before anything
			// else (a close for backpressure included).
			c.q.pushTail(nil, payload[w-len(hdr):])
		default:
			c.q.pushTail(hdr[w:], payload)
		}
	} else {
		// A writer, or the socket's next writable edge, is coming.
		c.q.push(hdr, payload)
	}
	if kind == frameData {
		c.wantDrainLocked()
	}
	c.sent(kind, n)
	return nil
}

// wantDrainLocked notes that OnDrain is due once the queue empties.
func (c *Conn) wantDrainLocked() {
	if c.settings.OnDrain != nil && c.pendingLocked() > 0 {
		c.drainWanted = true
	}
}

func (c *Conn) sent(kind frameKind, n int) {
	if kind == frameData {
		c.touch()
		c.srv.stats.msgsOut.Add(1)
		c.srv.stats.bytesOut.Add(uint64(n))
	}
}

// received notes bytes from the peer: activity, and an answer to a ping.
func (c *Conn) received() {
	c.touch()
	if c.pingAt.Load() != 0 {
		c.pingAt.Store(0) // any byte answers a ping
	}
}

// touch records activity for the idle timeout without a clock read.
func (c *Conn) touch() {
	if !c.active.Load() {
		c.active.Store(true)
	}
}

// backpressureLocked ends a connection whose reader is too slow: what is
// queued is dropped but for the rest of a frame the peer already has the
// start of, so the 1008 close frame that follows lands at a frame
// boundary, never inside a cut frame. The closing handshake then runs as
// usual, bounded by closeGrace.
func (c *Conn) backpressureLocked() {
	c.srv.stats.backpressureCloses.Add(1)
	c.drainWanted = false
	if c.closeSent {
		return
	}
	c.q.keepFrame()
	c.closeLocked(ClosePolicyViolation, "slow reader")
	if err := c.t.flush(c); err != nil {
		c.wclosed = true
		c.abort()
	}
}

// unlock releases cbMu. A loop that found it held skipped the
// connection's turn and left word in missed: the turn is owed now.
func (c *Conn) unlock() {
	c.cbMu.Unlock()
	if c.missed.Load() && c.missed.CompareAndSwap(true, false) {
		c.srv.scheduleFlush(c)
	}
}

// drainLocked calls OnDrain; the caller holds cbMu.
func (c *Conn) drainLocked() {
	if c.state.Load() == stateOpen && c.settings.OnDrain != nil {
		c.safely(c.settings.OnDrain)
	}
}

// afterFlushLocked half-closes the socket once our close frame is out, so
// the peer sees its end of the stream after the close frame.
func (c *Conn) afterFlushLocked() {
	if c.closeSent && !c.shutWr && c.pendingLocked() == 0 && !c.wclosed {
		c.shutWr = true
		c.t.shutdownWrite(c)
	}
}

func (c *Conn) flushed() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.pendingLocked() == 0
}

// sendControl sends a ping or pong; they are dropped once closing. While a
// pong waits in the queue further pings get no answer of their own (RFC
// 6455 section 5.5.3 allows answering only the latest): a peer that pings
// without reading holds at most one pong here, and a queue over
// MaxBackpressure closes it like any slow reader.
func (c *Conn) sendControl(op byte, payload []byte) {
	var hdr [2]byte
	c.wmu.Lock()
	if !c.wclosed && !c.closeSent {
		if op == opPong && c.pongQueued && c.pendingLocked() > 0 {
			c.srv.stats.pongsSkipped.Add(1)
		} else {
			c.sendLocked(appendHeader(hdr[:0], op, true, false, len(payload)), payload, frameControl)
			if op == opPong && c.pendingLocked() > 0 {
				c.pongQueued = true
			}
		}
	}
	c.wmu.Unlock()
}

// abort ends the connection at once, from any goroutine. The finish runs
// under cbMu on a new goroutine so that a caller inside a callback (which
// holds cbMu) never deadlocks.
func (c *Conn) abort() {
	if c.state.Load() == stateClosed {
		return
	}
	go func() {
		c.cbMu.Lock()
		c.finishLocked()
		c.unlock()
	}()
}

// finishLocked releases the connection and calls OnClose, exactly once.
// The caller holds cbMu.
func (c *Conn) finishLocked() {
	if c.state.Swap(stateClosed) == stateClosed {
		return
	}
	c.wmu.Lock()
	c.wclosed = true
	c.q.reset()
	c.t.close(c)
	var tasks []taskEntry
	if c.tasks != nil {
		tasks = *c.tasks
	}
	c.tasks, c.tasksDone = nil, true
	c.resumeLocked()
	c.wmu.Unlock()
	c.rs.release()
	c.srv.reg.remove(c)
	c.srv.pubsub.dropAll(c)
	c.srv.stats.closed.Add(1)
	// Each work still addressed to the connection is settled, so that
	// every Each's onFinish still comes once.
	for _, t := range tasks {
		t.settle(c)
	}
	if c.settings.OnClose != nil {
		c.safely(c.settings.OnClose)
	}
}

// resetLocked makes the coming close of the socket a reset: the kernel
// drops what the peer never read instead of holding it for minutes.
// The caller holds wmu.
func (c *Conn) resetLocked() { c.t.reset(c) }

// safely runs a callback; a panic in it closes the connection with
// CloseInternalError and is logged, and never reaches the process.
func (c *Conn) safely(f func(*Conn)) {
	defer c.srv.recoverPanic(c)
	f(c)
}

// recoverPanic, deferred around user code, turns a panic into a log line
// with its stack and the end of the one connection it happened on, as
// net/http does for a handler. The lines are rate limited: a panic that
// every client can trigger must not become a log flood.
func (s *Server) recoverPanic(c *Conn) {
	if r := recover(); r != nil {
		s.stats.panics.Add(1)
		if c == nil { // onFinish of an Each with no originator
			s.logs.Error("panic", "wsext: panic in a callback", "panic", r, "stack", string(debug.Stack()))
			return
		}
		s.logs.Error("panic", "wsext: panic in a callback", "conn", c.String(), "panic", r, "stack", string(debug.Stack()))
		// The closing handshake stops further callbacks and ends the
		// connection when the peer answers, or after closeGrace.
		c.CloseWithCode(CloseInternalError, "internal error")
	}
}

// fail answers a protocol violation: a close frame with the code, then
// nothing more is parsed while the peer closes its end.
func (c *Conn) fail(err error) {
	code, reason := CloseProtocolError, err.Error()
	var ce *closeError
	if errors.As(err, &ce) {
		code, reason = ce.code, ce.reason
	}
	if code == CloseMessageTooBig {
		c.srv.stats.tooBig.Add(1)
	}
	c.rs.stop()
	c.CloseWithCode(code, reason)
}

// checkTimeouts is the reaper's look at one connection; now is the
// reaper's reading of Server.mono.
func (c *Conn) checkTimeouts(now int64) {
	switch c.state.Load() {
	case stateOpen:
		if c.active.Load() {
			c.active.Store(false)
			c.lastActive = now
		}
		if c.timeout <= 0 {
			return
		}
		if p := c.pingAt.Load(); p != 0 {
			if now-p >= c.timeout {
				c.srv.stats.timeouts.Add(1)
				c.CloseWithCode(CloseGoingAway, "no answer to ping")
				c.wmu.Lock()
				c.resetLocked()
				c.wmu.Unlock()
				c.abort()
			}
			return
		}
		if now-c.lastActive >= c.timeout {
			c.pingAt.Store(now)
			c.srv.stats.pingsSent.Add(1)
			c.sendControl(opPing, nil)
		}
	case stateClosing:
		if now >= c.closeBy.Load() {
			// The peer neither answered our close nor read it.
			c.wmu.Lock()
			c.resetLocked()
			c.wmu.Unlock()
			c.abort()
		}
	}
}
