package wsext

import (
	"errors"
	"net"
)

// transport is the network side of a connection: how its queued bytes
// reach the peer and how it gets a turn for work from other goroutines.
// There are two, both stateless (the state is the Conn's):
//
//   - pollTransport: a non-blocking socket (Conn.fd) served by an event
//     loop: writes are tried at once, the rest flushed in the loop's turns
//     (poll_linux.go).
//   - streamTransport: a net.Conn (Conn.raw) read by a goroutine of its own
//     and written by another while its queue is not empty: TLS, every
//     connection with Options.GoroutinePerConn, and every connection off
//     Linux.
//
// Every method but resume runs under the connection's wmu.
type transport interface {
	// flush sends the queue: as far as the socket takes it now (poll), or
	// by making sure the writer goroutine runs (stream).
	flush(c *Conn) error
	// queued says an empty queue got bytes that were not tried: a turn of
	// the loop (poll), or the writer goroutine (stream), must send them.
	queued(c *Conn)
	// tasksQueued says Each work arrived; first when the list was empty.
	tasksQueued(c *Conn, first bool)
	// resume gives a reader paused for its Each calls a turn again; the
	// caller does not hold wmu.
	resume(c *Conn)
	// shutdownWrite half-closes the connection after our close frame.
	shutdownWrite(c *Conn)
	// reset makes the coming close drop what the peer never read.
	reset(c *Conn)
	// close releases the network connection.
	close(c *Conn)
}

type (
	pollTransport   struct{}
	streamTransport struct{}
)

func (pollTransport) flush(c *Conn) error { return c.flushPollLocked() }

func (pollTransport) queued(c *Conn) { c.srv.scheduleFlush(c) }

func (pollTransport) tasksQueued(c *Conn, first bool) {
	if first {
		c.srv.scheduleFlush(c)
	}
}

func (pollTransport) resume(c *Conn) { c.srv.scheduleFlush(c) }

func (pollTransport) shutdownWrite(c *Conn) {
	if c.fd >= 0 {
		shutdownWrite(c.fd)
	}
}

func (pollTransport) reset(c *Conn) {
	if c.fd >= 0 {
		resetOnClose(c.fd)
	}
}

func (pollTransport) close(c *Conn) {
	if c.fd >= 0 {
		c.srv.detach(c)
		closeFD(c.fd)
		c.fd = -1
	}
}

func (streamTransport) flush(c *Conn) error {
	c.startFlusherLocked()
	return nil
}

func (streamTransport) queued(c *Conn) { c.startFlusherLocked() }

func (streamTransport) tasksQueued(c *Conn, _ bool) {
	if !c.taskRunner {
		c.taskRunner = true
		go c.runTasksStream()
	}
}

// resume needs nothing more: resumeLocked woke the reader's channel.
func (streamTransport) resume(*Conn) {}

func (streamTransport) shutdownWrite(c *Conn) {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

func (streamTransport) reset(c *Conn) {
	if tc, ok := c.raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

func (streamTransport) close(c *Conn) {
	if c.raw != nil {
		c.raw.Close()
	}
}

// startFlusherLocked starts the goroutine that writes a stream
// connection's queue, unless it runs.
func (c *Conn) startFlusherLocked() {
	if !c.flushing {
		c.flushing = true
		go c.flushStream()
	}
}

// flushPollLocked writes queued bytes to a polled socket until it is full.
func (c *Conn) flushPollLocked() error {
	for c.q.len() > 0 {
		var arr [maxIovecs][]byte
		n, err := writeBuffers(c.fd, c.q.iovecs(arr[:0]))
		if n > 0 {
			c.q.advance(n)
		}
		if err != nil {
			if errors.Is(err, errAgain) {
				return nil
			}
			return err
		}
	}
	c.pongQueued = false
	c.afterFlushLocked()
	if c.drainWanted {
		// OnDrain runs in the connection's turn, under cbMu.
		c.srv.scheduleFlush(c)
	}
	return nil
}

// flushStream writes the queue of a goroutine-per-connection socket; it runs
// on its own goroutine while the queue is not empty, so writers never block.
// The queue it takes always starts at a frame boundary: a stream write
// either sends everything or fails.
func (c *Conn) flushStream() {
	c.wmu.Lock()
	for c.q.len() > 0 && !c.wclosed {
		taken := c.q.take()
		c.pongQueued = false
		c.inflight = taken.len()
		c.wmu.Unlock()
		err := taken.writeTo(c.raw)
		taken.reset()
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
	drained := c.drainWanted && c.pendingLocked() == 0
	c.drainWanted = c.drainWanted && !drained
	c.wmu.Unlock()
	if peerDone {
		c.abort()
		return
	}
	if drained {
		c.cbMu.Lock()
		c.drainLocked()
		c.unlock()
	}
}

// writeNow writes what the socket takes at once, without blocking, for a
// frame offered to an empty queue; a stream takes nothing here (its writer
// goroutine sends), so the frame is queued. It is not a transport method
// on purpose: through an interface call the compiler cannot see that the
// header, on the caller's stack, does not escape, and every message would
// allocate it.
func (c *Conn) writeNow(hdr, payload []byte) (int, error) {
	if _, polled := c.t.(pollTransport); !polled {
		return 0, nil
	}
	if c.fd < 0 {
		return 0, net.ErrClosed
	}
	return writev(c.fd, hdr, payload)
}

// writeFailed reports whether err from writeNow or flush ends the
// connection: anything but a full socket.
func writeFailed(err error) bool { return err != nil && !errors.Is(err, errAgain) }
