package load

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// MaxMessageSize bounds the messages Conn.Read accepts, so that a broken
// server cannot make the client allocate without limit.
const MaxMessageSize = 16 << 20

// ErrClosed reports a close frame from the server.
var ErrClosed = errors.New("load: connection closed by the server")

// ErrProtocol reports a frame the client does not accept: masked, reserved
// bits or opcode, a control frame over 125 bytes or fragmented, or a message
// over MaxMessageSize.
var ErrProtocol = errors.New("load: WebSocket protocol error")

// DialOptions tunes how connections are opened.
type DialOptions struct {
	// Timeout bounds the TCP connect plus the handshake; 0 means 10 s.
	Timeout time.Duration
	// ReadBuffer is the size of the connection's read buffer; 0 means 4096.
	ReadBuffer int
	// RecvBuffer, if positive, sets the socket's SO_RCVBUF before connecting.
	// A small value makes a receiver that never reads stall the server soon.
	RecvBuffer int
	// Parallel is how many dials DialMany runs at once; 0 means 64.
	Parallel int
}

// Conn is a client WebSocket connection. It is not safe for concurrent use,
// except Close.
type Conn struct {
	nc      net.Conn
	br      *bufio.Reader
	rd      io.Reader // what br reads from
	mask    [4]byte
	readBuf int
	hdr     [ws.MaxHeaderSize]byte
	ctl     []byte
}

// Dial opens one WebSocket connection to a ws:// URL.
func Dial(ctx context.Context, rawURL string, opts DialOptions) (*Conn, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	nd := net.Dialer{}
	if opts.RecvBuffer > 0 {
		size := opts.RecvBuffer
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
			})
			return errors.Join(err, serr)
		}
	}
	d := ws.Dialer{Timeout: timeout, NetDial: nd.DialContext}
	nc, br, _, err := d.Dial(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("load: dial %s: %w", rawURL, err)
	}
	c := &Conn{nc: nc, rd: nc, mask: ws.NewMask(), readBuf: opts.ReadBuffer}
	if br != nil {
		// The server sent data right behind its 101; read that first.
		c.rd = io.MultiReader(br, nc)
	}
	if c.readBuf <= 0 {
		c.readBuf = 4096
	}
	return c, nil
}

// DialMany opens n connections to rawURL, opts.Parallel at a time, adding 1
// to counter (if not nil) per connection. On any failure it closes what it
// opened and returns the first error.
func DialMany(ctx context.Context, rawURL string, n int, opts DialOptions, counter *atomic.Int64) ([]*Conn, error) {
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = 64
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := make([]*Conn, n)
	var (
		next     atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	for range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := Dial(ctx, rawURL, opts)
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("connection %d of %d: %w", i+1, n, err) })
					cancel()
					return
				}
				conns[i] = c
				if counter != nil {
					counter.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		CloseAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

// CloseAll closes every non-nil connection of conns, resetting them (no
// TIME_WAIT left behind, which matters after ten thousand connections).
func CloseAll(conns []*Conn) {
	for _, c := range conns {
		if c != nil {
			c.Abort()
		}
	}
}

// NetConn returns the underlying network connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the network connection without a closing handshake.
func (c *Conn) Close() error { return c.nc.Close() }

// Abort closes the connection with a TCP reset.
func (c *Conn) Abort() error {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	return c.nc.Close()
}

// AppendFrame appends to dst one final, masked frame carrying payload and
// returns the extended slice. payload itself is not modified. Writing the
// same frame again and again is how constant messages cost nothing to mask.
func (c *Conn) AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: c.mask, Length: int64(len(payload))}
	n := ws.HeaderSize(h)
	start := len(dst)
	dst = append(dst, make([]byte, n+len(payload))...)
	encodeHeader(dst[start:start+n], h)
	copy(dst[start+n:], payload)
	ws.Cipher(dst[start+n:], c.mask, 0)
	return dst
}

// Mask returns the mask AppendFrame uses, for re-masking parts of a frame.
func (c *Conn) Mask() [4]byte { return c.mask }

// WriteFrame writes an encoded frame in one system call.
func (c *Conn) WriteFrame(frame []byte) error {
	_, err := c.nc.Write(frame)
	return err
}

// Read reads the next complete data message into buf (reusing its storage)
// and returns its opcode and bytes. It answers pings and skips pongs; a
// close frame ends the connection with ErrClosed.
func (c *Conn) Read(buf []byte) (ws.OpCode, []byte, error) {
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.rd, c.readBuf)
	}
	msg := buf[:0]
	var op ws.OpCode
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.hdr[:])
		if err != nil {
			return 0, nil, err
		}
		if h.Masked || h.Rsv != 0 {
			return 0, nil, fmt.Errorf("%w: masked or reserved bits in a server frame", ErrProtocol)
		}
		if h.OpCode.IsControl() {
			if err := c.control(h); err != nil {
				return 0, nil, err
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && op == 0, h.OpCode != ws.OpContinuation && op != 0:
			return 0, nil, fmt.Errorf("%w: bad fragmentation", ErrProtocol)
		case h.OpCode.IsReserved():
			return 0, nil, fmt.Errorf("%w: reserved opcode %d", ErrProtocol, h.OpCode)
		case h.OpCode != ws.OpContinuation:
			op = h.OpCode
		}
		if h.Length < 0 || h.Length > MaxMessageSize-int64(len(msg)) {
			return 0, nil, fmt.Errorf("%w: message over %d bytes", ErrProtocol, MaxMessageSize)
		}
		n := len(msg)
		msg = grow(msg, int(h.Length))
		if _, err := io.ReadFull(c.br, msg[n:]); err != nil {
			return 0, nil, err
		}
		if h.Fin {
			return op, msg, nil
		}
	}
}

func (c *Conn) control(h ws.Header) error {
	if h.Length > 125 || !h.Fin {
		return fmt.Errorf("%w: bad control frame", ErrProtocol)
	}
	c.ctl = grow(c.ctl[:0], int(h.Length))
	if _, err := io.ReadFull(c.br, c.ctl); err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPing:
		return c.WriteFrame(c.AppendFrame(nil, ws.OpPong, c.ctl))
	case ws.OpClose:
		code := ws.StatusNoStatusRcvd
		if len(c.ctl) >= 2 {
			code = ws.StatusCode(binary.BigEndian.Uint16(c.ctl))
		}
		c.WriteFrame(c.AppendFrame(nil, ws.OpClose, c.ctl[:min(len(c.ctl), 2)]))
		return fmt.Errorf("%w (code %d)", ErrClosed, code)
	}
	return nil
}

// grow extends b by n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// encodeHeader writes h into b, which is exactly ws.HeaderSize(h) long.
func encodeHeader(b []byte, h ws.Header) {
	b[0] = byte(h.OpCode)
	if h.Fin {
		b[0] |= 0x80
	}
	n := 2
	switch {
	case h.Length < 126:
		b[1] = byte(h.Length)
	case h.Length <= 0xffff:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(h.Length))
		n = 4
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(h.Length))
		n = 10
	}
	if h.Masked {
		b[1] |= 0x80
		copy(b[n:], h.Mask[:])
	}
}

// WebSocketURL turns base (a ws, wss, http or https URL, or host:port) plus
// path into a ws:// or wss:// URL.
func WebSocketURL(base, path string) (string, error) {
	u, err := parseBase(base)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.Path = path
	return u.String(), nil
}

// HTTPURL turns base (as for WebSocketURL) plus path into an http:// URL.
func HTTPURL(base, path string) (string, error) {
	u, err := parseBase(base)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path = path
	return u.String(), nil
}

func parseBase(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		u, err = url.Parse("ws://" + base)
	}
	if err != nil {
		return nil, fmt.Errorf("load: bad server URL %q: %w", base, err)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return nil, fmt.Errorf("load: bad server URL %q: scheme %q", base, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("load: bad server URL %q: no host", base)
	}
	return u, nil
}
