package wsext

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unicode/utf8"
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

	// The network side: fd >= 0 for a connection on the shared poller,
	// otherwise raw is written and the hijack goroutine reads.
	fd          int
	raw         net.Conn
	remote      net.Addr
	subprotocol string
	deflate     bool

	// Write side, under wmu.
	wmu       sync.Mutex
	out       []byte // queued bytes, out[outHead:] still to send
	outHead   int
	inflight  int  // bytes a stream flusher is writing outside wmu
	flushing  bool // a stream flusher goroutine is running
	wclosed   bool // nothing more may be written
	closeSent bool // our close frame is queued
	shutWr    bool // write side shut down after the close frame

	peerClosed atomic.Bool // the peer's close frame arrived

	sched    atomic.Int32 // poller scheduling: idle, queued/running, running with another event
	readable atomic.Bool  // the poller saw bytes (or an end) to read
	hangup   atomic.Bool  // the poller saw the peer's end: read until EOF

	timeout  int64        // seconds, fixed when the connection opens
	lastRecv atomic.Int64 // coarse clock of the last byte received
	lastSend atomic.Int64 // coarse clock of the last message sent
	pingAt   atomic.Int64 // when the unanswered ping was sent, 0 if none
	closeBy  atomic.Int64 // in stateClosing, when to give up on the peer

	regIdx int
	rs     readState
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

// RemoteAddr returns the peer's address, or nil after a failed upgrade.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Compressed reports whether permessage-deflate was negotiated.
func (c *Conn) Compressed() bool { return c.deflate }

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
	if c.deflate && len(data) >= c.srv.opts.CompressionThreshold {
		return c.writeCompressed(op, data)
	}
	var hdr [10]byte
	return c.send(appendHeader(hdr[:0], op, true, false, len(data)), data, true)
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
	c.closeSent = true
	c.state.CompareAndSwap(stateOpen, stateClosing)
	c.closeBy.Store(c.srv.now.Load() + int64(closeGrace.Seconds()))
	var buf [maxControlPayload + 12]byte
	payload := closePayload(buf[10:10], code, reason)
	hdr := appendHeader(buf[:0], opClose, true, false, len(payload))
	c.srv.stats.closesSent.add(code)
	if err := c.sendLocked(hdr, payload, false); err != nil {
		return err
	}
	return nil
}

// send writes one frame (header and payload) or queues it.
func (c *Conn) send(hdr, payload []byte, data bool) error {
	c.wmu.Lock()
	if c.wclosed || (data && c.closeSent) || !c.attached {
		c.wmu.Unlock()
		return ErrClosed
	}
	err := c.sendLocked(hdr, payload, data)
	c.wmu.Unlock()
	return err
}

// sendQueued queues a whole frame for the poller's workers to send.
func (c *Conn) sendQueued(frame []byte) error {
	c.wmu.Lock()
	if c.wclosed || c.closeSent || !c.attached {
		c.wmu.Unlock()
		return ErrClosed
	}
	if c.fd < 0 {
		err := c.sendLocked(frame, nil, true)
		c.wmu.Unlock()
		return err
	}
	before := c.pendingLocked()
	if before > 0 && before+len(frame) > c.srv.opts.MaxBackpressure {
		// The queue may only be waiting for a worker: give the socket what
		// it takes now, so that only bytes a slow reader refused count.
		if err := c.flushPollLocked(); err != nil {
			c.wclosed = true
			c.wmu.Unlock()
			c.abort()
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		if before = c.pendingLocked(); before > 0 && before+len(frame) > c.srv.opts.MaxBackpressure {
			c.backpressureLocked()
			c.wmu.Unlock()
			return ErrBackpressure
		}
	}
	c.queue(frame)
	c.sent(true, len(frame))
	c.wmu.Unlock()
	if before == 0 {
		// A non-empty queue is already waiting for a worker or for room
		// in the socket; either way it will be flushed.
		c.srv.scheduleFlush(c)
	}
	return nil
}

func (c *Conn) pendingLocked() int { return len(c.out) - c.outHead + c.inflight }

// sendLocked writes at once what the socket takes and queues the rest. An
// empty queue always takes one message whatever its size, so a message
// larger than MaxBackpressure can still reach a reader that keeps up.
func (c *Conn) sendLocked(hdr, payload []byte, data bool) error {
	n := len(hdr) + len(payload)
	before := c.pendingLocked()
	if before == 0 && c.fd >= 0 {
		w, err := writev(c.fd, hdr, payload)
		if w == n {
			c.sent(data, n)
			c.afterFlushLocked()
			return nil
		}
		if err != nil && !errors.Is(err, errAgain) {
			c.wclosed = true
			c.abort()
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		if w < 0 {
			w = 0
		}
		if w >= len(hdr) {
			c.queue(payload[w-len(hdr):])
		} else {
			c.queue(hdr[w:])
			c.queue(payload)
		}
		c.srv.armWrite(c)
	} else {
		if data && before > 0 && before+n > c.srv.opts.MaxBackpressure {
			c.backpressureLocked()
			return ErrBackpressure
		}
		c.queue(hdr)
		c.queue(payload)
		if c.fd < 0 && !c.flushing {
			c.flushing = true
			go c.flushStream()
		}
	}
	c.sent(data, n)
	return nil
}

func (c *Conn) sent(data bool, n int) {
	if data {
		c.lastSend.Store(c.srv.now.Load())
		c.srv.stats.msgsOut.Add(1)
		c.srv.stats.bytesOut.Add(uint64(n))
	}
}

func (c *Conn) queue(b []byte) {
	if len(b) == 0 {
		return
	}
	if c.out == nil {
		c.out = getBuf(len(b))
	} else if c.outHead > 0 && c.outHead == len(c.out) {
		c.out, c.outHead = c.out[:0], 0
	}
	if len(c.out)+len(b) > cap(c.out) {
		grown := getBuf(len(c.out) - c.outHead + len(b))
		grown = append(grown, c.out[c.outHead:]...)
		putBuf(c.out)
		c.out, c.outHead = grown, 0
	}
	c.out = append(c.out, b...)
}

// backpressureLocked drops what is queued for a reader too slow to take it
// and ends the connection: the close frame is sent only if the socket has
// room, since the peer is not reading.
func (c *Conn) backpressureLocked() {
	c.srv.stats.backpressureCloses.Add(1)
	putBuf(c.out)
	c.out, c.outHead = nil, 0
	if !c.closeSent && c.fd >= 0 {
		var buf [maxControlPayload + 12]byte
		payload := closePayload(buf[10:10], ClosePolicyViolation, "slow reader")
		writev(c.fd, appendHeader(buf[:0], opClose, true, false, len(payload)), payload)
		c.srv.stats.closesSent.add(ClosePolicyViolation)
	}
	c.closeSent = true
	c.wclosed = true
	c.abort()
}

// flushPollLocked writes queued bytes to a polled socket until it is full.
func (c *Conn) flushPollLocked() error {
	for c.outHead < len(c.out) {
		n, err := write(c.fd, c.out[c.outHead:])
		if n > 0 {
			c.outHead += n
		}
		if err != nil {
			if errors.Is(err, errAgain) {
				return nil
			}
			return err
		}
	}
	putBuf(c.out)
	c.out, c.outHead = nil, 0
	c.afterFlushLocked()
	return nil
}

// flushStream writes the queue of a goroutine-per-connection socket; it runs
// on its own goroutine while the queue is not empty, so writers never block.
func (c *Conn) flushStream() {
	c.wmu.Lock()
	for c.outHead < len(c.out) && !c.wclosed {
		b := c.out[c.outHead:]
		full := c.out
		c.out, c.outHead = nil, 0
		c.inflight = len(b)
		c.wmu.Unlock()
		_, err := c.raw.Write(b)
		putBuf(full)
		c.wmu.Lock()
		c.inflight = 0
		if err != nil {
			c.wclosed = true
			c.flushing = false
			c.wmu.Unlock()
			c.abort()
			return
		}
	}
	c.flushing = false
	c.afterFlushLocked()
	peerDone := c.peerClosed.Load() && c.closeSent
	c.wmu.Unlock()
	if peerDone {
		c.abort()
	}
}

// afterFlushLocked half-closes the socket once our close frame is out, so
// the peer sees its end of the stream after the close frame.
func (c *Conn) afterFlushLocked() {
	if c.closeSent && !c.shutWr && c.pendingLocked() == 0 && !c.wclosed {
		c.shutWr = true
		if c.fd >= 0 {
			shutdownWrite(c.fd)
		} else if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
}

func (c *Conn) flushed() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.pendingLocked() == 0
}

// sendControl sends a ping or pong; they are dropped once closing.
func (c *Conn) sendControl(op byte, payload []byte) {
	var hdr [2]byte
	c.wmu.Lock()
	if !c.wclosed && !c.closeSent {
		c.sendLocked(appendHeader(hdr[:0], op, true, false, len(payload)), payload, false)
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
		c.cbMu.Unlock()
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
	putBuf(c.out)
	c.out, c.outHead = nil, 0
	if c.fd >= 0 {
		c.srv.detach(c)
		closeFD(c.fd)
		c.fd = -1
	} else if c.raw != nil {
		c.raw.Close()
	}
	c.wmu.Unlock()
	c.rs.release()
	c.srv.reg.remove(c)
	c.srv.pubsub.dropAll(c)
	c.srv.stats.closed.Add(1)
	if c.settings.OnClose != nil {
		c.safely(c.settings.OnClose)
	}
}

// safely runs a callback; a panic in it closes the connection with
// CloseInternalError and is logged, and never reaches the process.
func (c *Conn) safely(f func(*Conn)) {
	defer c.srv.recoverPanic(c)
	f(c)
}

// recoverPanic, deferred around user code, turns a panic into a log line
// with its stack and the end of the one connection it happened on, as
// net/http does for a handler.
func (s *Server) recoverPanic(c *Conn) {
	if r := recover(); r != nil {
		if c == nil { // onFinish of an Each with no originator
			s.log.Error("wsext: panic in a callback", "panic", r, "stack", string(debug.Stack()))
			return
		}
		s.log.Error("wsext: panic in a callback", "conn", c.String(), "panic", r, "stack", string(debug.Stack()))
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
	c.rs.discard = true
	c.CloseWithCode(code, reason)
}

// checkTimeouts is the reaper's look at one connection.
func (c *Conn) checkTimeouts(now int64) {
	switch c.state.Load() {
	case stateOpen:
		if c.timeout <= 0 {
			return
		}
		if p := c.pingAt.Load(); p != 0 {
			if now-p >= c.timeout {
				c.srv.stats.timeouts.Add(1)
				c.CloseWithCode(CloseGoingAway, "no answer to ping")
				c.abort()
			}
			return
		}
		last := max(c.lastRecv.Load(), c.lastSend.Load())
		if now-last >= c.timeout {
			c.pingAt.Store(now)
			c.srv.stats.pingsSent.Add(1)
			c.sendControl(opPing, nil)
		}
	case stateClosing:
		if now >= c.closeBy.Load() {
			c.abort()
		}
	}
}
