package worker

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsd-server/wsd/internal/ratelog"
)

// fasthttp's Server.Serve ends at the first accept error that is not a
// timeout, and so would the worker: out of descriptors (EMFILE), the worker
// would exit, its replacements would meet the same flood, and the master
// would take the restarts for a crash loop and stop the daemon. The
// acceptGuard's listener keeps such errors from Serve: it waits and tries
// again, and at the descriptor limit closes the connections waiting to be
// accepted, so that their clients are told at once instead of hanging in
// the backlog until they time out.

// Accept backoff bounds: the wait after a failed accept starts at
// minAcceptBackoff and doubles to maxAcceptBackoff; a successful accept
// resets it.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// maxShed bounds the connections closed unserved at one failed accept, so
// that a flood cannot hold the accept loop.
const maxShed = 1024

// An acceptReason classifies a failed accept, for the metric and the log.
type acceptReason int

const (
	acceptEMFILE  acceptReason = iota // the process's descriptor limit
	acceptENFILE                      // the system's file table
	acceptENOBUFS                     // socket buffers
	acceptENOMEM                      // kernel memory
	acceptAborted                     // the connection failed before it was accepted
	acceptOther                       // anything else that may pass: EPERM from a firewall, EINTR, a timeout
	numAcceptReasons
)

// acceptReasons are the reasons' metric labels and ratelog keys; the log
// keys are constants, one per reason, so that each kind gets its line a
// second.
var acceptReasons = [numAcceptReasons]struct{ label, logKey, msg string }{
	acceptEMFILE:  {"emfile", "accept emfile", "accept: out of file descriptors (EMFILE); closing waiting connections and retrying"},
	acceptENFILE:  {"enfile", "accept enfile", "accept: the system's file table is full (ENFILE); closing waiting connections and retrying"},
	acceptENOBUFS: {"enobufs", "accept enobufs", "accept: out of socket buffers (ENOBUFS); retrying"},
	acceptENOMEM:  {"enomem", "accept enomem", "accept: out of kernel memory (ENOMEM); retrying"},
	acceptAborted: {"aborted", "accept aborted", "accept: a connection failed before it was accepted; retrying"},
	acceptOther:   {"other", "accept other", "accept failed; retrying"},
}

// classifyAccept says whether an Accept error may pass, and why it
// happened. Errors that cannot pass (the listener was closed, or is not a
// listening socket) end Serve as before.
func classifyAccept(err error) (reason acceptReason, retry bool) {
	if errors.Is(err, net.ErrClosed) {
		return 0, false
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE:
			return acceptEMFILE, true
		case syscall.ENFILE:
			return acceptENFILE, true
		case syscall.ENOBUFS:
			return acceptENOBUFS, true
		case syscall.ENOMEM:
			return acceptENOMEM, true
		// accept(2): Linux passes the pending network errors of the new
		// connection to accept, and they are to be treated like EAGAIN.
		case syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPROTO, syscall.ENETDOWN,
			syscall.ENOPROTOOPT, syscall.EHOSTDOWN, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
			syscall.EOPNOTSUPP, syscall.ETIMEDOUT:
			return acceptAborted, true
		case syscall.EPERM, syscall.EINTR, syscall.EAGAIN:
			return acceptOther, true
		}
		return 0, false // EBADF, EINVAL, ENOTSOCK...: the listener is broken
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return acceptOther, true
	}
	return 0, false
}

// acceptGuard counts and logs the failed accepts of a worker's listener.
type acceptGuard struct {
	log     *ratelog.Limiter
	errs    [numAcceptReasons]atomic.Uint64
	shed    atomic.Uint64
	wait    func(d time.Duration, stop <-chan struct{}) // tests make it instant
	noSpare bool                                        // tests leave the spare descriptor out
}

func newAcceptGuard(log *ratelog.Limiter) *acceptGuard {
	return &acceptGuard{log: log, wait: sleep}
}

// Errors returns the failed accepts by reason label.
func (g *acceptGuard) Errors() map[string]uint64 {
	m := make(map[string]uint64, numAcceptReasons)
	for r := range numAcceptReasons {
		m[acceptReasons[r].label] = g.errs[r].Load()
	}
	return m
}

// Shed returns the number of connections closed unserved because the
// worker was out of descriptors.
func (g *acceptGuard) Shed() uint64 { return g.shed.Load() }

// listen wraps ln so that its Accept returns only connections and the
// errors that end the listener. It keeps a spare descriptor: see shed.
func (g *acceptGuard) listen(ln net.Listener) net.Listener {
	al := &acceptListener{Listener: ln, g: g, useSpare: !g.noSpare, spare: -1, closed: make(chan struct{})}
	if al.useSpare {
		al.spare = openSpare()
	}
	return al
}

// acceptListener is a listener whose Accept survives resource exhaustion.
// Only one goroutine, fasthttp's accept loop, calls Accept.
type acceptListener struct {
	net.Listener
	g         *acceptGuard
	useSpare  bool
	spare     int // the descriptor given up at the limit; -1 when not held
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept waits for and returns the next connection. A failed accept that
// may pass is counted, logged (one line a second per reason) and retried
// after a backoff; at the descriptor limit the waiting connections are
// closed first.
func (l *acceptListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if l.useSpare && l.spare < 0 {
				// Given up at the limit and not taken back then.
				l.spare = openSpare()
			}
			return c, nil
		}
		reason, retry := classifyAccept(err)
		if !retry {
			l.releaseSpare()
			return nil, err
		}
		l.g.errs[reason].Add(1)
		backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
		shed := 0
		if reason == acceptEMFILE || reason == acceptENFILE {
			shed = l.shed()
			l.g.shed.Add(uint64(shed))
		}
		r := acceptReasons[reason]
		l.g.log.Error(r.logKey, r.msg, "err", err, "closed_unserved", shed, "retry_in", backoff)
		l.g.wait(backoff, l.closed)
		select {
		case <-l.closed:
			l.releaseSpare()
			return nil, net.ErrClosed
		default:
		}
	}
}

// shed closes, unserved, the connections waiting to be accepted: the
// reserved-descriptor trick. Out of descriptors, accept cannot take a
// connection off the queue, so the spare descriptor is closed to make room
// for one, each waiting connection is accepted and closed at once, and the
// spare is opened again. The clients see their connection closed rather
// than wait for a worker that cannot take them.
//
// Another goroutine may take the freed descriptor first; then nothing is
// shed this time, and the spare is opened again after the next accept.
func (l *acceptListener) shed() int {
	if !l.useSpare {
		return 0
	}
	if l.spare < 0 {
		l.spare = openSpare()
		return 0
	}
	closeSpare(l.spare)
	l.spare = -1
	n := drain(l.Listener, maxShed)
	l.spare = openSpare()
	return n
}

// releaseSpare closes the spare descriptor when Accept ends for good.
func (l *acceptListener) releaseSpare() {
	if l.spare >= 0 {
		closeSpare(l.spare)
		l.spare = -1
	}
}

// Close closes the listener and ends a backoff under way; Accept then
// returns and gives the spare descriptor back.
func (l *acceptListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}

// sleep waits d, or until stop is closed.
func sleep(d time.Duration, stop <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}
