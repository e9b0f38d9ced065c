package wsext

import (
	"errors"
	"fmt"
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
// over a second is logged (rate limited) with the connection it ran;
// Options.GoroutinePerConn is the way out for callbacks that must block.

var errAgain = unix.EAGAIN

type poller struct {
	loops []*loop
	table fdTable
}

// loop is one event loop: an epoll set, the goroutine that runs it, and
// the list of its connections that other goroutines have work for.
type loop struct {
	epfd   int
	wakefd int // eventfd: a write wakes the loop from epoll_wait

	mu       sync.Mutex
	ready    []*Conn
	spare    []*Conn
	sleeping atomic.Bool // in a blocking epoll_wait: a scheduler must wake it

	// primary is the goroutine that runs the loop. One whose callback
	// blocks is replaced (see watch); it leaves when its turn ends.
	primary atomic.Pointer[runner]
}

// runner is one goroutine running a loop, with what watch needs to see it
// stuck: turns counts its turns, turn names the connection in one.
type runner struct {
	turns atomic.Uint64
	turn  atomic.Pointer[Conn]
	seen  uint64 // turns at watch's last look; watch's own
	stuck int    // watch's looks in a row that found the same turn; watch's own
}

var (
	pollerOnce sync.Once
	thePoller  *poller
	pollerErr  error
)

func getPoller() (*poller, error) {
	pollerOnce.Do(func() {
		p := &poller{}
		for range max(runtime.GOMAXPROCS(0), 1) {
			l, err := newLoop()
			if err != nil {
				pollerErr = err
				return
			}
			p.loops = append(p.loops, l)
		}
		for _, l := range p.loops {
			r := &runner{}
			l.primary.Store(r)
			go l.run(p, r)
		}
		go p.watch()
		thePoller = p
	})
	return thePoller, pollerErr
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("wsext: epoll_create: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("wsext: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(wfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, fmt.Errorf("wsext: epoll_ctl: %w", err)
	}
	return &loop{epfd: epfd, wakefd: wfd}, nil
}

// loopFor picks the loop of a new connection's descriptor.
func (p *poller) loopFor(fd int) int32 { return int32(fd % len(p.loops)) }

func (l *loop) run(p *poller, r *runner) {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for l.primary.Load() == r {
		// Poll without blocking first: under load there is nearly always
		// something, and a blocking system call costs the scheduler more.
		n, err := unix.EpollWait(l.epfd, events, 0)
		if n == 0 && err == nil && !l.hasReady() {
			l.sleeping.Store(true)
			if l.hasReady() {
				l.sleeping.Store(false)
			} else {
				n, err = unix.EpollWait(l.epfd, events, -1)
				l.sleeping.Store(false)
			}
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			panic("wsext: epoll_wait: " + err.Error())
		}
		for i := range n {
			fd := int(events[i].Fd)
			if fd == l.wakefd {
				var b [8]byte
				unix.Read(l.wakefd, b[:])
				continue
			}
			c := p.table.get(fd)
			if c == nil {
				continue
			}
			if events[i].Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.readable.Store(true)
			}
			if events[i].Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				// The end came with this edge: no other edge will
				// announce it, so a short read must not stop the reading.
				c.hangup.Store(true)
			}
			l.turnOf(r, c, buf, false)
		}
		l.runReady(r, buf)
	}
}

func (l *loop) hasReady() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ready) > 0
}

// runReady gives a turn to every connection scheduled from elsewhere.
func (l *loop) runReady(r *runner, buf []byte) {
	l.mu.Lock()
	batch := l.ready
	l.ready, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	for i, c := range batch {
		batch[i] = nil
		l.turnOf(r, c, buf, true)
	}
	l.mu.Lock()
	if l.spare == nil && cap(batch) <= 1<<16 {
		l.spare = batch[:0]
	}
	l.mu.Unlock()
}

// Scheduling states of a connection on its loop's ready list: listed at
// most once; work arriving during its turn lists it again after.
const (
	schedIdle int32 = iota
	schedListed
	schedAgain
)

// schedule lists c for a turn on its loop, from any goroutine.
func (l *loop) schedule(c *Conn) {
	for {
		switch c.sched.Load() {
		case schedIdle:
			if c.sched.CompareAndSwap(schedIdle, schedListed) {
				l.list(c)
				return
			}
		case schedListed:
			if c.sched.CompareAndSwap(schedListed, schedAgain) {
				return
			}
		default:
			return
		}
	}
}

func (l *loop) list(c *Conn) {
	l.mu.Lock()
	l.ready = append(l.ready, c)
	l.mu.Unlock()
	if l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
		var one = [8]byte{1}
		unix.Write(l.wakefd, one[:])
	}
}

// turnOf runs one turn of c on the loop. listed says the turn came from
// the ready list, whose scheduling state it then settles.
func (l *loop) turnOf(r *runner, c *Conn, buf []byte, listed bool) {
	r.turn.Store(c)
	more := c.turn(buf)
	r.turn.Store(nil)
	r.turns.Add(1)
	if !listed {
		if more {
			l.schedule(c)
		}
		return
	}
	if more || !c.sched.CompareAndSwap(schedListed, schedIdle) {
		// Work came during the turn, or bytes remain: the connection
		// goes to the back of the list so that the others get their turn.
		c.sched.Store(schedListed)
		l.list(c)
	}
}

// stallCheck is how often watch looks at the loops: a callback that blocks
// holds up the other connections of its loop for one to two of these.
const stallCheck = 100 * time.Millisecond

// watch finds loops whose goroutine is stuck in one turn (a callback that
// blocks) and gives each a new goroutine, so that the other connections
// of the loop wait no longer than stallCheck or two; the stuck goroutine
// leaves when its turn ends, and connections never run two turns at once
// (cbMu). It runs for the life of the process, like the loops.
func (p *poller) watch() {
	tick := time.NewTicker(stallCheck)
	defer tick.Stop()
	for range tick.C {
		for i, l := range p.loops {
			r := l.primary.Load()
			turns, c := r.turns.Load(), r.turn.Load()
			if c == nil || turns != r.seen {
				r.seen, r.stuck = turns, 0
				continue
			}
			if r.stuck++; r.stuck != 1 {
				continue
			}
			nr := &runner{}
			l.primary.Store(nr)
			go l.run(p, nr)
			c.srv.stats.loopStalls.Add(1)
			c.srv.logs.Warn("loop stall", "wsext: a callback blocked an event loop; its other connections moved to a new goroutine (callbacks should not block: see Options.GoroutinePerConn)",
				"loop", i, "conn", c.String())
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
	if !c.readable.Swap(false) {
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
func (s *Server) register(c *Conn) error {
	p := thePoller
	p.table.set(c.fd, c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd)}
	if err := unix.EpollCtl(p.loops[c.loop].epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		p.table.set(c.fd, nil)
		return err
	}
	return nil
}

// detach removes a connection's socket from its loop before it is closed,
// so that the descriptor number can be reused at once.
func (s *Server) detach(c *Conn) {
	p := thePoller
	p.table.set(c.fd, nil)
	unix.EpollCtl(p.loops[c.loop].epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
}

// assignLoop gives a connection about to be polled its loop, for life.
func (s *Server) assignLoop(c *Conn) { c.loop = thePoller.loopFor(c.fd) }

// scheduleFlush gives a polled connection a turn on its loop, to send its
// queue, run its tasks or read again; from any goroutine.
func (s *Server) scheduleFlush(c *Conn) {
	if c.loop >= 0 {
		thePoller.loops[c.loop].schedule(c)
	}
}

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
