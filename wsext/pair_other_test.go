//go:build !linux

package wsext

import (
	"net"
	"testing"
)

// pollPair attaches one end of a loopback TCP pair to s (on its own
// goroutine: there is no poller here) and returns the other end.
func pollPair(tb testing.TB, s *Server, settings Settings) (*Conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	s.start()
	c := &Conn{srv: s, settings: settings, uuid: s.nextUUID.Add(1), fd: -1, t: streamTransport{}, regIdx: -1, raw: srv, remote: srv.RemoteAddr()}
	c.cbMu.Lock()
	c.attached = true
	s.reg.add(c)
	c.cbMu.Unlock()
	go c.serveStream(srv)
	tb.Cleanup(func() { peer.Close() })
	return c, peer
}
