// Package memconn is an in-memory net.Conn for fuzz targets: reads come
// from a fixed input, then io.EOF; writes are kept. It lets a target run
// bytes through a whole server (fasthttp, the upgrade, wsext's frame
// reader) without a socket.
package memconn

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is an in-memory connection. Its methods are safe for concurrent use.
type Conn struct {
	r      io.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

// New returns a connection whose reads return input, then io.EOF.
func New(input []byte) *Conn {
	return &Conn{r: bytes.NewReader(input), closed: make(chan struct{})}
}

// Read reads from the input.
func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write keeps p, or fails with net.ErrClosed after Close.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.out.Write(p)
}

// Close makes later writes fail.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Done is closed once the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Output returns a copy of everything written so far.
func (c *Conn) Output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

var addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

// LocalAddr returns 127.0.0.1:1.
func (c *Conn) LocalAddr() net.Addr { return addr }

// RemoteAddr returns 127.0.0.1:1.
func (c *Conn) RemoteAddr() net.Addr { return addr }

// SetDeadline does nothing: reads and writes never wait.
func (c *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
