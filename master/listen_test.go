package master

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/config"
)

func TestNewEndpoint(t *testing.T) {
	tests := []struct {
		address, network, addr string
	}{
		{"127.0.0.1", "tcp4", "127.0.0.1:80"},
		{"0.0.0.0", "tcp4", "0.0.0.0:80"},
		{"", "tcp4", ":80"},
		{"localhost", "tcp4", "localhost:80"},
		{"::", "tcp", "[::]:80"},
		{"::1", "tcp", "[::1]:80"},
	}
	for _, tt := range tests {
		cfg := config.Default()
		cfg.Address, cfg.Port = tt.address, 80
		if got := newEndpoint(cfg); got.network != tt.network || got.addr != tt.addr {
			t.Errorf("newEndpoint(%q) = %+v, want %s %s", tt.address, got, tt.network, tt.addr)
		}
	}
}

// TestSlotSockets opens two slot sockets on one port: both accept, the port
// stays open while any is open, and the master's handles stay non-blocking.
func TestSlotSockets(t *testing.T) {
	ctx := context.Background()
	files, ep, err := openSockets(ctx, endpoint{network: "tcp4", addr: "127.0.0.1:0"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(files)
	if strings.HasSuffix(ep.addr, ":0") {
		t.Fatalf("endpoint %s still has port 0", ep.addr)
	}
	for i, f := range files {
		// os/exec calls Fd on ExtraFiles; that must not make the socket,
		// shared with the workers, blocking.
		fd := int(f.Fd())
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if flags&unix.O_NONBLOCK == 0 {
			t.Errorf("socket %d is blocking after Fd()", i)
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || v != 1 {
			t.Errorf("socket %d: SO_REUSEPORT = %d, %v", i, v, err)
		}
	}

	// The kernel spreads new connections over both sockets of the group.
	var lns []net.Listener
	for _, f := range files {
		ln, err := net.FileListener(f)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, ln)
	}
	accepted := make(chan int, 200)
	for i, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
				accepted <- i
			}
		}()
	}
	seen := make(map[int]int)
	for i := 0; i < 100 && len(seen) < 2; i++ {
		c, err := net.DialTimeout("tcp4", ep.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		select {
		case k := <-accepted:
			seen[k]++
		case <-time.After(5 * time.Second):
			t.Fatal("connection not accepted")
		}
	}
	if len(seen) != 2 {
		t.Errorf("connections accepted by sockets %v, want both", seen)
	}
}

// TestPortInUse: a port held by another socket, with or without
// SO_REUSEPORT, is reported in use, naming the port.
func TestPortInUse(t *testing.T) {
	ctx := context.Background()
	plain, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	// A running wsd: its sockets have SO_REUSEPORT, which a second wsd's
	// would join but for checkFree.
	files, ours, err := openSockets(ctx, endpoint{network: "tcp4", addr: "127.0.0.1:0"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(files)

	for _, addr := range []string{plain.Addr().String(), ours.addr} {
		err := checkFree(ctx, endpoint{network: "tcp4", addr: addr})
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("checkFree(%s) = %v, want EADDRINUSE", addr, err)
			continue
		}
		_, port, _ := net.SplitHostPort(addr)
		if !strings.Contains(err.Error(), port) || !strings.Contains(err.Error(), "already in use") {
			t.Errorf("checkFree(%s) = %q, want a message naming port %s", addr, err, port)
		}
	}
}
