package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/internal/workerproto"
)

// The broker socket is how master and worker connect without a file
// system: one SOCK_SEQPACKET socketpair per worker (fd 6 in the worker), on
// which each side hands the other new stream connections by SCM_RIGHTS
// (package internal/workerproto has the ops). This file is the master's
// side; the worker's is in package worker.
//
// Handing over a new connection for each relay session and each scrape,
// rather than keeping one byte stream per purpose for the worker's life,
// is what lets a binary upgrade work: the exec drops the old master image
// mid-stream, which would leave half a frame in a stream that outlived it.
// Datagrams are delivered whole or not at all, so the broker socket itself
// survives the exec, and the streams that break are simply replaced.

// brokerPair makes a worker's broker socket: the master's end as a
// connection, the worker's as a file for exec.Cmd.ExtraFiles. Both are
// close-on-exec; ExtraFiles clears the flag on the worker's copy only.
func brokerPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("master: broker socketpair: %w", err)
	}
	mine, err := workerproto.FDConn(fds[0], "wsd-broker")
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
	mine, err := workerproto.FDConn(fds[0], "wsd-stream")
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, err
	}
	return mine, fds[1], nil
}

// serveBroker answers the requests of p's worker on its broker socket b
// until the worker closes it or the master releases p: each relay request
// gets a fresh connection to the pub/sub hub.
func (m *master) serveBroker(p *proc, b *net.UnixConn) {
	for {
		op, fd, err := workerproto.RecvFD(b)
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
		case workerproto.OpRelay:
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
	return workerproto.SendFD(b, workerproto.OpRelay, theirs)
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
		if err := workerproto.SendFD(b, workerproto.OpMetrics, theirs); err != nil {
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
