package worker

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// openSpare opens the descriptor kept in reserve for shedding: /dev/null,
// which needs no memory nor a network; -1 when it cannot be had (out of
// descriptors already).
func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

func closeSpare(fd int) { unix.Close(fd) }

// drain accepts and closes at once up to max connections waiting on ln's
// queue, without waiting for more, and returns how many it closed. It
// works on the socket itself (Go's Accept would wait for a connection
// when the queue is empty, and register each one with the poller for
// nothing); it closes none when ln is not a socket.
func drain(ln net.Listener, max int) int {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		for n < max {
			// The listening socket is non-blocking: EAGAIN ends the
			// queue; EMFILE means the freed descriptor was taken.
			nfd, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				return
			}
			unix.Close(nfd)
			n++
		}
	})
	return n
}
