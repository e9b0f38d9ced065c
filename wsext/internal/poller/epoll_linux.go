package poller

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// New starts n event loops (GOMAXPROCS when n <= 0) and their watch.
func New[E any, H Handler[E]](n int) (*Poller[E, H], error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Poller[E, H]{}
	for range n {
		l, err := newLoop[E, H]()
		if err != nil {
			for _, l := range p.loops {
				l.close()
			}
			return nil, err
		}
		p.loops = append(p.loops, l)
	}
	for _, l := range p.loops {
		r := &runner[E]{}
		l.primary.Store(r)
		go l.run(p, r)
	}
	go p.watch()
	return p, nil
}

func newLoop[E any, H Handler[E]]() (*loop[E, H], error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("poller: epoll_create: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("poller: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(wfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, fmt.Errorf("poller: epoll_ctl: %w", err)
	}
	return &loop[E, H]{epfd: epfd, wakefd: wfd}, nil
}

func (l *loop[E, H]) close() {
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}

func (l *loop[E, H]) wake() {
	one := [8]byte{1}
	unix.Write(l.wakefd, one[:])
}

// Add registers fd, a non-blocking socket, for h on a loop of its own for
// life. Events are edge-triggered, for reading and writing.
func (p *Poller[E, H]) Add(fd int, h H) error {
	e := h.PollEntry()
	idx := fd % len(p.loops)
	e.loop.Store(int32(idx + 1))
	if !p.table.set(fd, (*E)(h)) {
		return fmt.Errorf("poller: descriptor %d out of range", fd)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(p.loops[idx].epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.table.set(fd, nil)
		return fmt.Errorf("poller: epoll_ctl: %w", err)
	}
	return nil
}

// Remove unregisters fd before it is closed, so that its number can be
// reused at once. h stays scheduled-safe: a later Schedule runs one more
// turn, which must find the handler finished.
func (p *Poller[E, H]) Remove(fd int, h H) {
	e := h.PollEntry()
	p.table.set(fd, nil)
	if idx := e.loop.Load(); idx > 0 {
		unix.EpollCtl(p.loops[idx-1].epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

func (l *loop[E, H]) run(p *Poller[E, H], r *runner[E]) {
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
			panic("poller: epoll_wait: " + err.Error())
		}
		for i := range n {
			fd := int(events[i].Fd)
			if fd == l.wakefd {
				var b [8]byte
				unix.Read(l.wakefd, b[:])
				continue
			}
			hp := p.table.get(fd)
			if hp == nil {
				continue
			}
			h := H(hp)
			e := h.PollEntry()
			if events[i].Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				e.readable.Store(true)
			}
			if events[i].Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				// The end came with this edge: no other edge will
				// announce it, so a short read must not stop the reading.
				e.hangup.Store(true)
			}
			l.turnOf(r, h, buf, false)
		}
		l.runReady(r, buf)
	}
}
