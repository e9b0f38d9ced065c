package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/config"
)

// endpoint is where the server listens.
type endpoint struct {
	network string // "tcp4" or "tcp"
	addr    string // host:port
}

// newEndpoint returns where cfg says to listen. An IPv6 address (such as
// "::") asks for the dual-stack "tcp" network; anything else, including the
// empty address that means every address, for IPv4 only.
func newEndpoint(cfg config.Config) endpoint {
	network := "tcp4"
	if strings.Contains(cfg.Address, ":") {
		network = "tcp"
	}
	return endpoint{network: network, addr: cfg.ListenAddr()}
}

func (e endpoint) String() string { return e.addr }

// listenError names the address and, for the common case, says plainly that
// the port is taken.
func listenError(addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		_, port, _ := net.SplitHostPort(addr)
		return fmt.Errorf("master: port %s is already in use (%s): %w", port, addr, err)
	}
	return fmt.Errorf("master: cannot listen on %s: %w", addr, err)
}

// checkFree binds the address once without SO_REUSEPORT and lets it go. The
// slot sockets all carry SO_REUSEPORT, and Linux lets a second process of the
// same user join such a group: without this check a second wsd on the same
// port would start and silently take half the first one's connections.
func checkFree(ctx context.Context, e endpoint) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, e.network, e.addr)
	if err != nil {
		return listenError(e.addr, err)
	}
	return ln.Close()
}

// listenReusePort opens one listening socket with SO_REUSEPORT set, so that
// several such sockets can share the address, and returns the master's handle
// on it: a file that stays open, and the socket with it, until the master
// closes it, whatever the workers it is handed to do.
func listenReusePort(ctx context.Context, e endpoint) (*os.File, net.Addr, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(ctx, e.network, e.addr)
	if err != nil {
		return nil, nil, listenError(e.addr, err)
	}
	defer ln.Close() // the dup below keeps the socket open
	f, err := dupSocket(ln.(*net.TCPListener))
	if err != nil {
		return nil, nil, fmt.Errorf("master: listener on %s: %w", e.addr, err)
	}
	return f, ln.Addr(), nil
}

// dupSocket returns a file holding a duplicate of ln's descriptor.
//
// It does not use TCPListener.File: the file that returns switches the
// descriptor to blocking mode when its Fd method is called, as os/exec does
// for ExtraFiles. O_NONBLOCK belongs to the open file description, which the
// master shares with every worker of the slot, so a worker's accept could then
// block a thread past its shutdown. os.NewFile on a descriptor that is already
// non-blocking leaves it alone.
func dupSocket(ln *net.TCPListener) (*os.File, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	var dup int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	return os.NewFile(uintptr(dup), "wsd-listener"), nil
}

// openSockets opens n slot sockets on e. With port 0 the first socket's port
// is used for the others, so all of them form one SO_REUSEPORT group.
func openSockets(ctx context.Context, e endpoint, n int) ([]*os.File, endpoint, error) {
	files := make([]*os.File, 0, n)
	for range n {
		f, addr, err := listenReusePort(ctx, e)
		if err != nil {
			closeAll(files)
			return nil, e, err
		}
		e.addr = addr.String()
		files = append(files, f)
	}
	return files, e, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
