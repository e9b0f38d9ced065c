package wsext

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/wsext/internal/poller"
)

// The poller: after the handshake a plain TCP connection leaves fasthttp's
// goroutine. Its socket (a duplicate of fasthttp's, which fasthttp then
// closes) joins one of N event loops, N = GOMAXPROCS. Each loop owns an
// edge-triggered epoll set and runs to completion: the goroutine that sees
// a socket readable reads it, parses, runs OnMessage and sends what was
// written, with no hand-off to another goroutine (uWebSockets' model, and
// gnet's and nbio's in Go). Work from other goroutines (a Write that found
// the socket full, Each tasks, a resumed reader) reaches the owning loop
// through its ready list and an eventfd wake-up. An idle connection costs
// its Conn and a table slot: no goroutine, no buffer.
//
// The rule that follows: a callback runs on a loop shared with other
// connections, so it must not block. A loop that stays in one turn for
// over poller.StallCheck (100 ms) is handed to a new goroutine, and the
// stall is logged (rate limited) and counted; Options.GoroutinePerConn is
// the way out for callbacks that must block.

var errAgain = unix.EAGAIN

// polledConn is a Conn as the poller sees it: the methods the poller calls
// stay out of Conn's API.
type polledConn Conn

func (pc *polledConn) PollEntry() *poller.Entry { return &pc.pe }

func (pc *polledConn) Turn(buf []byte) bool { return (*Conn)(pc).turn(buf) }

var (
	pollerOnce sync.Once
	thePoller  *poller.Poller[polledConn, *polledConn]
	pollerErr  error
)

// getPoller starts the process's event loops on first use: they serve
// every Server's polled connections.
func getPoller() (*poller.Poller[polledConn, *polledConn], error) {
	pollerOnce.Do(func() {
		p, err := poller.New[polledConn, *polledConn](0)
		if err != nil {
			pollerErr = err
			return
		}
		p.OnStall = func(loop int, pc *polledConn) {
			c := (*Conn)(pc)
			c.srv.stats.loopStalls.Add(1)
			c.srv.logs.Warn("loop stall", "wsext: a callback blocked an event loop; its other connections moved to a new goroutine (callbacks should not block: see Options.GoroutinePerConn)",
				"loop", loop, "conn", c.String())
		}
		thePoller = p
	})
	return thePoller, pollerErr
}

// turn processes a connection; a panic in user code ends only that
// connection (process holds cbMu under a defer, so it is released).
func (c *Conn) turn(buf []byte) (more bool) {
	defer c.srv.recoverPanic(c)
	return c.process(buf)
}

// tasksPerTurn bounds the Each tasks one turn runs, so that a connection
// with a long queue does not hold a worker from the others.
const tasksPerTurn = 256

// process runs a connection's turn: it sends what is queued, runs the Each
// tasks addressed to it, and reads and dispatches what the socket has. It
// reports whether the connection should be looked at again because work
// remained.
func (c *Conn) process(buf []byte) (more bool) {
	// A loop never waits for a connection's lock: a callback holding it
	// elsewhere (OnShutdown, OnClose, a stalled turn) would stall every
	// connection of the loop. The holder gives the turn back in unlock.
	if !c.cbMu.TryLock() {
		c.missed.Store(true)
		if !c.cbMu.TryLock() {
			return false
		}
		c.missed.Store(false)
	}
	defer c.unlock()
	if c.state.Load() == stateClosed {
		return false
	}
	if !c.flushTurnLocked() {
		return false
	}
	more = c.runTasksLocked(tasksPerTurn)
	if c.state.Load() == stateClosed {
		return false
	}
	c.wmu.Lock()
	paused := c.eachPausedLocked()
	c.wmu.Unlock()
	if paused {
		// Read no further: eachFinished schedules the connection again,
		// and readable stays set for that turn.
		return more
	}
	if !c.pe.TakeReadable() {
		return more // scheduled to flush or run tasks, or the socket drained
	}
	for range 16 {
		target := c.rs.direct()
		direct := target != nil
		if !direct {
			target = buf
		}
		n, err := read(c.fd, target)
		if n > 0 {
			var finished bool
			if direct {
				finished = c.inputDirect(n)
			} else {
				finished = c.input(buf[:n])
			}
			if finished {
				return false
			}
			if c.eachOut.Load() >= eachWindow {
				c.pe.SetReadable() // the next turn pauses, or reads on
				return true
			}
			if n < len(target) && !c.pe.Hangup() {
				return more
			}
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return more
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		c.finishLocked() // EOF or a socket error
		return false
	}
	c.pe.SetReadable() // bytes remain: the next turn must read
	return true
}

// flushTurnLocked sends the queue as far as the socket takes it and calls
// OnDrain once it is empty after a queued write; it reports false when the
// connection failed and is finished. The caller holds cbMu.
func (c *Conn) flushTurnLocked() bool {
	c.wmu.Lock()
	if c.q.len() > 0 {
		if err := c.flushPollLocked(); err != nil {
			c.wclosed = true
			c.wmu.Unlock()
			c.finishLocked()
			return false
		}
	}
	drained := c.drainWanted && c.pendingLocked() == 0
	if drained {
		c.drainWanted = false
	}
	c.wmu.Unlock()
	if drained {
		c.drainLocked()
	}
	return true
}

// pollAttach moves a hijacked plain TCP connection to the poller: it
// duplicates the socket and takes what fasthttp already buffered past the
// handshake. ok is false when the connection cannot be polled (TLS, or a
// listener of the user's that wraps connections).
func pollAttach(hj, raw net.Conn) (fd int, pending []byte, ok bool) {
	sc, isSys := raw.(syscall.Conn)
	if !isSys {
		return -1, nil, false
	}
	if _, err := getPoller(); err != nil {
		return -1, nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, nil, false
	}
	fd = -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return -1, nil, false
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, nil, false
	}
	// A deadline in the past makes the read below return at once once
	// fasthttp's buffer is empty, leaving the kernel's bytes to the poller.
	raw.SetReadDeadline(time.Unix(1, 0))
	tmp := getBuf(4096)
	tmp = tmp[:cap(tmp)]
	for {
		n, err := hj.Read(tmp)
		if n > 0 {
			if pending == nil {
				pending = getBuf(n)
			}
			pending = append(pending, tmp[:n]...)
		}
		if err != nil || n == 0 {
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EAGAIN) {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					// The connection failed during the handover.
					unix.Close(fd)
					putBuf(tmp)
					putBuf(pending)
					return -1, nil, false
				}
			}
			break
		}
	}
	putBuf(tmp)
	return fd, pending, true
}

// register adds a connection's socket to its loop.
func (s *Server) register(c *Conn) error { return thePoller.Add(c.fd, (*polledConn)(c)) }

// detach removes a connection's socket from its loop before it is closed,
// so that the descriptor number can be reused at once.
func (s *Server) detach(c *Conn) { thePoller.Remove(c.fd, (*polledConn)(c)) }

// scheduleFlush gives a polled connection a turn on its loop, to send its
// queue, run its tasks or read again; from any goroutine. It does nothing
// for a connection off the poller.
func (s *Server) scheduleFlush(c *Conn) {
	if thePoller != nil {
		thePoller.Schedule((*polledConn)(c))
	}
}

func read(fd int, p []byte) (int, error) {
	n, err := unix.Read(fd, p)
	if n < 0 {
		n = 0
	}
	return n, err
}

// writeBuffers writes bufs with one writev; the iovecs live on the stack.
func writeBuffers(fd int, bufs [][]byte) (int, error) {
	var iov [maxIovecs]unix.Iovec
	n := 0
	for _, b := range bufs {
		if len(b) == 0 || n == len(iov) {
			continue
		}
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	return sysWritev(fd, &iov[0], n)
}

// writev writes a frame header and its payload with one system call,
// without copying them together; the iovecs live on the stack. It fills
// its own two iovecs rather than calling writeBuffers on purpose: built on
// it (a slice or variadic of the two buffers), the header escapes and
// every echoed message allocates.
func writev(fd int, a, b []byte) (int, error) {
	var iov [2]unix.Iovec
	n := 0
	if len(a) > 0 {
		iov[n].Base = &a[0]
		iov[n].SetLen(len(a))
		n++
	}
	if len(b) > 0 {
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	return sysWritev(fd, &iov[0], n)
}

// sysWritev is the writev system call on n iovecs from iov, retried on
// EINTR.
func sysWritev(fd int, iov *unix.Iovec, n int) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(iov)), uintptr(n))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

func shutdownWrite(fd int) { unix.Shutdown(fd, unix.SHUT_WR) }

// resetOnClose makes close(fd) send a reset and drop unsent bytes.
func resetOnClose(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

func closeFD(fd int) { unix.Close(fd) }
