package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/admin"
)

// The broker socket is how master and worker connect without a file
// system: one SOCK_SEQPACKET socketpair per worker (fd 6 in the worker), on
// which each side hands the other new stream connections by SCM_RIGHTS.
// Every message is one op byte, with at most one descriptor attached:
//
//	'R'  worker → master, no descriptor: connect me to the pub/sub hub
//	'R'  master → worker, a stream socket: the hub is at its other end
//	'M'  master → worker, a stream socket: serve your metrics (HTTP) on it
//
// Handing over a new connection for each relay session and each scrape,
// rather than keeping one byte stream per purpose for the worker's life,
// is what lets a binary upgrade work: the exec drops the old master image
// mid-stream, which would leave half a frame in a stream that outlived it.
// Datagrams are delivered whole or not at all, so the broker socket itself
// survives the exec, and the streams that break are simply replaced.
const (
	opRelay   = 'R'
	opMetrics = 'M'
)

// brokerWriteTimeout bounds a send on a broker socket. A message is a byte
// and a descriptor, so only a worker that has stopped reading makes a send
// wait at all.
const brokerWriteTimeout = 5 * time.Second

// relayReplyTimeout is how long a worker waits for the master to answer a
// relay request before asking again. A request can go unanswered when the
// master re-executes itself between reading it and answering.
const relayReplyTimeout = 2 * time.Second

// brokerPair makes a worker's broker socket: the master's end as a
// connection, the worker's as a file for exec.Cmd.ExtraFiles. Both are
// close-on-exec; ExtraFiles clears the flag on the worker's copy only.
func brokerPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("master: broker socketpair: %w", err)
	}
	mine, err := fdConn(fds[0], "wsd-broker")
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return mine, os.NewFile(uintptr(fds[1]), "wsd-broker"), nil
}

// streamPair makes a connected pair of stream sockets: one end as a
// connection for this process, the other as a bare descriptor to hand over
// and then close.
func streamPair() (net.Conn, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("master: socketpair: %w", err)
	}
	mine, err := fdConn(fds[0], "wsd-stream")
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, err
	}
	return mine, fds[1], nil
}

// fdConn makes a connection of the unix socket fd, which it takes over.
func fdConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // net.FileConn works on a duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("master: %s: %w", name, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("master: %s: descriptor %d is not a unix socket", name, fd)
	}
	return uc, nil
}

// sendFD sends op on the broker socket b, with the descriptor fd attached
// unless it is negative. The caller keeps fd and closes it.
func sendFD(b *net.UnixConn, op byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	// Scrapes and relay answers may send at once; a datagram socket keeps
	// their messages apart, and the last deadline set covers both.
	b.SetWriteDeadline(time.Now().Add(brokerWriteTimeout))
	if _, _, err := b.WriteMsgUnix([]byte{op}, oob, nil); err != nil {
		return fmt.Errorf("master: broker: %w", err)
	}
	return nil
}

// recvFD reads one message from the broker socket b: its op and the
// descriptor it carries, or -1. It returns io.EOF once the other side has
// closed. Descriptors received are close-on-exec (Go's ReadMsgUnix asks for
// MSG_CMSG_CLOEXEC on Linux), and any beyond the first are closed.
func recvFD(b *net.UnixConn) (op byte, fd int, err error) {
	var buf [16]byte
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := b.ReadMsgUnix(buf[:], oob)
	fd = -1
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		for _, msg := range msgs {
			fds, _ := unix.ParseUnixRights(&msg)
			for _, f := range fds {
				if fd < 0 {
					fd = f
				} else {
					unix.Close(f)
				}
			}
		}
		if perr != nil && err == nil {
			err = fmt.Errorf("master: broker: control message: %w", perr)
		}
	}
	switch {
	case err != nil:
	case n == 0:
		// A datagram socket reads an empty message at the peer's close.
		err = io.EOF
	case n > 1:
		err = fmt.Errorf("master: broker: message of %d bytes", n)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return 0, -1, err
	}
	return buf[0], fd, nil
}

// serveBroker answers the requests of p's worker on its broker socket b
// until the worker closes it or the master releases p: each relay request
// gets a fresh connection to the pub/sub hub.
func (m *master) serveBroker(p *proc, b *net.UnixConn) {
	for {
		op, fd, err := recvFD(b)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				m.limit.Warn("broker read", "broker: reading a worker's request", "worker", p.pid, "err", err)
			}
			return
		}
		if fd >= 0 {
			unix.Close(fd) // a worker sends requests, not descriptors
		}
		switch op {
		case opRelay:
			if err := m.connectRelay(b); err != nil {
				m.limit.Warn("broker relay", "pub/sub relay: cannot connect a worker", "worker", p.pid, "err", err)
			}
		default:
			// An op from a newer worker binary, which will do without an
			// answer.
			m.limit.Warn("broker op", "broker: unknown request", "worker", p.pid, "op", string(rune(op)))
		}
	}
}

// connectRelay attaches one end of a new socketpair to the hub and sends the
// other to the worker on b.
func (m *master) connectRelay(b *net.UnixConn) error {
	mine, theirs, err := streamPair()
	if err != nil {
		return err
	}
	defer unix.Close(theirs)
	if err := m.relay.Attach(mine); err != nil {
		return err
	}
	// If the send fails, closing theirs ends mine too, and the hub drops it.
	return sendFD(b, opRelay, theirs)
}

// metricsDialer returns the admin.Target.Dial of the worker whose broker
// socket is b: a new socketpair per scrape, one end sent to the worker.
func metricsDialer(b *net.UnixConn) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mine, theirs, err := streamPair()
		if err != nil {
			return nil, err
		}
		defer unix.Close(theirs)
		if err := sendFD(b, opMetrics, theirs); err != nil {
			mine.Close()
			return nil, err
		}
		return mine, nil
	}
}

// rawFD returns the descriptor number behind c without changing it:
// os.File.Fd would put the descriptor into blocking mode, which breaks the
// deadlines the master relies on should it keep running.
func rawFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// workerBroker is a worker's side of its broker socket.
type workerBroker struct {
	conn    *net.UnixConn
	relays  chan net.Conn // the master's answers to relay requests
	metrics atomic.Pointer[admin.Endpoint]
	done    chan struct{} // closed when the socket can no longer be read
}

// newWorkerBroker starts reading the broker socket c.
func newWorkerBroker(c *net.UnixConn) *workerBroker {
	b := &workerBroker{conn: c, relays: make(chan net.Conn, 1), done: make(chan struct{})}
	go b.run()
	return b
}

// run takes the connections the master sends: relay answers go to
// dialRelay, metrics connections to the metrics endpoint, if any.
func (b *workerBroker) run() {
	defer close(b.done)
	for {
		op, fd, err := recvFD(b.conn)
		if err != nil {
			return
		}
		if fd < 0 {
			continue
		}
		c, err := fdConn(fd, "wsd-stream")
		if err != nil {
			continue // not a socket: nothing to serve on it
		}
		switch op {
		case opRelay:
			select {
			case b.relays <- c:
			default:
				c.Close() // the answer to a request that timed out
			}
		case opMetrics:
			if ep := b.metrics.Load(); ep != nil {
				ep.ServeConn(c)
			} else {
				c.Close() // the scrape fails: this worker keeps no metrics
			}
		default:
			c.Close()
		}
	}
}

// dialRelay asks the master for a connection to its pub/sub hub; it is the
// connect function of the worker's cluster.Engine.
func (b *workerBroker) dialRelay(ctx context.Context) (net.Conn, error) {
	if err := sendFD(b.conn, opRelay, -1); err != nil {
		return nil, err
	}
	t := time.NewTimer(relayReplyTimeout)
	defer t.Stop()
	select {
	case c := <-b.relays:
		return c, nil
	case <-t.C:
		return nil, errors.New("master: broker: no answer to a relay request")
	case <-b.done:
		return nil, fmt.Errorf("master: broker: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close closes the socket and any answer left unclaimed.
func (b *workerBroker) close() {
	b.conn.Close()
	<-b.done
	select {
	case c := <-b.relays:
		c.Close()
	default:
	}
}
