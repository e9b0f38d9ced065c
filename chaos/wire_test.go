//go:build chaos

package chaos

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// Raw WebSocket framing for hostile clients: they send what they like,
// as fast as they like, and read only when they choose to.

// Opcodes of RFC 6455.
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// rawConn is a client WebSocket over a bare net.Conn.
type rawConn struct {
	net.Conn
	br     *bufio.Reader
	worker int // Wsd-Worker of the 101
}

// rawOpts are the options of dialRaw.
type rawOpts struct {
	rcvbuf     int           // SO_RCVBUF set before connecting (0: the default); small makes a slow reader fill up fast
	extensions string        // Sec-WebSocket-Extensions to offer
	timeout    time.Duration // for connecting and the handshake; 0 means 5 s
}

// dialRaw connects to addr and upgrades path to a WebSocket.
func dialRaw(addr, path string, o rawOpts) (*rawConn, error) {
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	dialer := net.Dialer{Timeout: o.timeout}
	if o.rcvbuf > 0 {
		dialer.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := dialer.Dial("tcp4", addr)
	if err != nil {
		return nil, err
	}
	c := &rawConn{Conn: nc, br: bufio.NewReaderSize(nc, 16<<10)}
	if err := c.handshake(addr, path, o); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *rawConn) handshake(addr, path string, o rawOpts) error {
	c.SetDeadline(time.Now().Add(o.timeout))
	defer c.SetDeadline(time.Time{})
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if o.extensions != "" {
		req += "Sec-WebSocket-Extensions: " + o.extensions + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake: %s", resp.Status)
	}
	c.worker, _ = strconv.Atoi(resp.Header.Get("Wsd-Worker"))
	return nil
}

// appendFrame appends one final client frame. Its mask key is zero, so the
// payload goes as it is: a server cannot tell such a key from any other and
// must take it, and a flood costs the client no masking.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, 0, 0, 0, 0)
	return append(dst, payload...)
}

// closePayload is the body of a close frame.
func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// closeCode returns the code of a close frame's body (1005 when it has
// none).
func closeCode(payload []byte) int {
	if len(payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(payload))
}

// readHeader reads the header of a server frame.
func (c *rawConn) readHeader() (fin bool, op byte, n int64, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0F
	if h[1]&0x80 != 0 {
		return fin, op, 0, errors.New("a masked frame from the server")
	}
	switch n = int64(h[1] & 0x7F); n {
	case 126:
		var b [2]byte
		_, err = io.ReadFull(c.br, b[:])
		n = int64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, err = io.ReadFull(c.br, b[:])
		n = int64(binary.BigEndian.Uint64(b[:]))
	}
	if n < 0 {
		err = errors.New("a frame length over 2^63")
	}
	return
}

// readFrame reads one whole server frame of at most limit bytes of payload.
func (c *rawConn) readFrame(limit int64) (fin bool, op byte, payload []byte, err error) {
	fin, op, n, err := c.readHeader()
	if err != nil {
		return
	}
	if n > limit {
		return fin, op, nil, fmt.Errorf("a %d-byte frame (opcode %d), over %d", n, op, limit)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return
}

// drain reads frames until the server ends the connection or quiet passes
// without a byte, for at most limit in all. It returns the close code the
// server sent (0: none), how many bytes came, and whether the server ended
// the connection (EOF or a reset) rather than staying silent.
func (c *rawConn) drain(quiet, limit time.Duration) (code int, n int64, ended bool) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		dl := time.Now().Add(quiet)
		if dl.After(end) {
			dl = end
		}
		c.SetReadDeadline(dl)
		_, op, size, err := c.readHeader()
		if err == nil && op == opClose && size <= 125 {
			b := make([]byte, size)
			_, err = io.ReadFull(c.br, b)
			code = closeCode(b)
		} else if err == nil {
			var k int64
			k, err = io.CopyN(io.Discard, c.br, size)
			n += k
		}
		n += 2
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return code, n, false
			}
			return code, n, true
		}
	}
	return code, n, false
}

// linger0 makes Close send a reset instead of a FIN.
func linger0(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}
