package wsext

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The poller: after the handshake a plain TCP connection leaves fasthttp's
// goroutine. Its socket (a duplicate of fasthttp's, which fasthttp then
// closes) is watched by epoll, edge-triggered, and handed to a bounded pool
// of worker goroutines only when the kernel reports bytes to read or room
// to write. An idle connection thus costs its Conn and a table slot: no
// goroutine, no buffer.

var errAgain = unix.EAGAIN

type engine struct {
	epfds   []int
	work    chan *Conn
	table   fdTable
	workers atomic.Int32
	spawnMu sync.Mutex
}

var (
	engineOnce sync.Once
	theEngine  *engine
	engineErr  error
)

func getEngine() (*engine, error) {
	engineOnce.Do(func() {
		n := (runtime.GOMAXPROCS(0) + 3) / 4
		e := &engine{work: make(chan *Conn, 16384)}
		for range n {
			fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
			if err != nil {
				engineErr = err
				return
			}
			e.epfds = append(e.epfds, fd)
		}
		for _, fd := range e.epfds {
			go e.poll(fd)
		}
		theEngine = e
	})
	return theEngine, engineErr
}

// ensureWorkers starts worker goroutines up to n; they live as long as the
// process, like the poller.
func (e *engine) ensureWorkers(n int) {
	if int(e.workers.Load()) >= n {
		return
	}
	e.spawnMu.Lock()
	for int(e.workers.Load()) < n {
		e.workers.Add(1)
		go e.worker()
	}
	e.spawnMu.Unlock()
}

func (e *engine) poll(epfd int) {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			panic("wsext: epoll_wait: " + err.Error())
		}
		for i := range n {
			if c := e.table.get(int(events[i].Fd)); c != nil {
				if events[i].Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					c.readable.Store(true)
				}
				if events[i].Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					// The end came with this edge: no other edge will
					// announce it, so a short read must not stop the reading.
					c.hangup.Store(true)
				}
				e.schedule(c)
			}
		}
	}
}

// Scheduling states: a connection is queued or processed by one worker at
// a time; an event arriving meanwhile makes that worker look again.
const (
	schedIdle int32 = iota
	schedRunning
	schedAgain
)

func (e *engine) schedule(c *Conn) {
	for {
		switch c.sched.Load() {
		case schedIdle:
			if c.sched.CompareAndSwap(schedIdle, schedRunning) {
				e.work <- c
				return
			}
		case schedRunning:
			if c.sched.CompareAndSwap(schedRunning, schedAgain) {
				return
			}
		default:
			return
		}
	}
}

func (e *engine) worker() {
	buf := make([]byte, 64<<10)
	for c := range e.work {
		for {
			if c.turn(buf) {
				// A busy connection goes to the back of the queue so that
				// others get their turn; if the queue is full, go on.
				c.sched.Store(schedRunning)
				select {
				case e.work <- c:
				default:
					continue
				}
				break
			}
			if c.sched.CompareAndSwap(schedRunning, schedIdle) {
				break
			}
			c.sched.Store(schedRunning)
		}
	}
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
	c.cbMu.Lock()
	defer c.cbMu.Unlock()
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
	if !c.readable.Swap(false) {
		return more // scheduled to flush or run tasks, or the socket drained
	}
	for range 16 {
		target := c.directTarget()
		direct := target != nil
		if !direct {
			target = buf
		}
		n, err := read(c.fd, target)
		if n > 0 {
			c.received()
			var perr error
			if direct {
				c.srv.stats.bytesIn.Add(uint64(n))
				perr = c.directFilled(n)
			} else {
				perr = c.consume(buf[:n])
			}
			if perr != nil {
				c.fail(perr)
			}
			if c.state.Load() == stateClosed {
				return false
			}
			if c.peerClosed.Load() && c.flushed() {
				c.finishLocked()
				return false
			}
			if c.eachOut.Load() >= eachWindow {
				c.readable.Store(true) // the next turn pauses, or reads on
				return true
			}
			if n < len(target) && !c.hangup.Load() {
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
	c.readable.Store(true) // bytes remain: the next turn must read
	return true
}

// flushTurnLocked sends the queue as far as the socket takes it and calls
// OnDrain once it is empty after a queued write; it reports false when the
// connection failed and is finished. The caller holds cbMu.
func (c *Conn) flushTurnLocked() bool {
	c.wmu.Lock()
	if c.outHead < len(c.out) {
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
	if _, err := getEngine(); err != nil {
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

// register adds a connection's socket to a poller.
func (s *Server) register(c *Conn) error {
	e := theEngine
	e.ensureWorkers(s.opts.Workers)
	e.table.set(c.fd, c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd)}
	if err := unix.EpollCtl(e.epfds[c.fd%len(e.epfds)], unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		e.table.set(c.fd, nil)
		return err
	}
	return nil
}

// detach removes a connection's socket from its poller before it is closed,
// so that the descriptor number can be reused at once.
func (s *Server) detach(c *Conn) {
	e := theEngine
	e.table.set(c.fd, nil)
	unix.EpollCtl(e.epfds[c.fd%len(e.epfds)], unix.EPOLL_CTL_DEL, c.fd, nil)
}

// scheduleFlush asks a worker to send a connection's queue.
func (s *Server) scheduleFlush(c *Conn) { theEngine.schedule(c) }

// armWrite is a no-op: sockets are registered for EPOLLOUT edges from the
// start, and an edge arrives whenever a full socket drains.
func (s *Server) armWrite(*Conn) {}

// fdTable maps descriptors to connections without locks on the lookup
// path: a fixed directory of lazily made chunks.
type fdTable struct {
	mu     sync.Mutex
	chunks [1 << 12]atomic.Pointer[[1 << 12]atomic.Pointer[Conn]]
}

func (t *fdTable) get(fd int) *Conn {
	if fd < 0 || fd >= len(t.chunks)<<12 {
		return nil
	}
	ch := t.chunks[fd>>12].Load()
	if ch == nil {
		return nil
	}
	return ch[fd&(1<<12-1)].Load()
}

func (t *fdTable) set(fd int, c *Conn) {
	if fd < 0 || fd >= len(t.chunks)<<12 {
		return
	}
	ch := t.chunks[fd>>12].Load()
	if ch == nil {
		t.mu.Lock()
		if ch = t.chunks[fd>>12].Load(); ch == nil {
			ch = new([1 << 12]atomic.Pointer[Conn])
			t.chunks[fd>>12].Store(ch)
		}
		t.mu.Unlock()
	}
	ch[fd&(1<<12-1)].Store(c)
}

func read(fd int, p []byte) (int, error) {
	n, err := unix.Read(fd, p)
	if n < 0 {
		n = 0
	}
	return n, err
}

func write(fd int, p []byte) (int, error) {
	n, err := unix.Write(fd, p)
	if n < 0 {
		n = 0
	}
	return n, err
}

// writev writes a frame header and its payload with one system call,
// without copying them together; the iovecs live on the stack.
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
	for {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
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
