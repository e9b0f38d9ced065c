package conformance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// acceptGUID is the magic string of RFC 6455 section 1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func newKey() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// request is an opening handshake under construction. Header order is kept
// and names are written exactly as given, so cases can send odd casing.
type request struct {
	method  string
	target  string
	proto   string
	headers [][2]string
}

// newRequest returns a valid RFC 6455 opening handshake for t.
func newRequest(t *Target) *request {
	return &request{
		method: "GET",
		target: t.path(),
		proto:  "HTTP/1.1",
		headers: [][2]string{
			{"Host", t.host()},
			{"Upgrade", "websocket"},
			{"Connection", "Upgrade"},
			{"Sec-WebSocket-Key", newKey()},
			{"Sec-WebSocket-Version", "13"},
		},
	}
}

// set replaces every header named name (case-insensitively) by one with
// value, keeping the first one's position.
func (r *request) set(name, value string) *request {
	for i, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			r.headers[i] = [2]string{name, value}
			r.del(name, i+1)
			return r
		}
	}
	r.headers = append(r.headers, [2]string{name, value})
	return r
}

// del removes the headers named name from position from on.
func (r *request) del(name string, from int) *request {
	kept := r.headers[:from]
	for _, h := range r.headers[from:] {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	r.headers = kept
	return r
}

func (r *request) get(name string) string {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

func (r *request) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\n", r.method, r.target, r.proto)
	for _, h := range r.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// conn is the suite's client end of one connection.
type conn struct {
	nc      net.Conn
	br      *bufio.Reader
	timeout time.Duration
	resp    *http.Response
	pmd     *deflate // nil unless permessage-deflate was negotiated

	writeErr error // first failed write; the server may have failed fast

	// A data message being reassembled across frames.
	msgOp         byte
	msgCompressed bool
	msgParts      [][]byte
	msgLen        int64
	maxMessage    int64

	notes   []string // NON-STRICT observations made along the way
	matched int      // expected messages and pongs received
	pending []event  // events read ahead and pushed back
}

// pushBack makes e the next event next returns.
func (c *conn) pushBack(e event) { c.pending = append(c.pending, e) }

// dial connects to t and sends req followed by extra (bytes pipelined behind
// the handshake). It returns the connection and the server's response,
// whatever its status; only a 101 leaves the connection usable.
func dial(ctx context.Context, t *Target, req *request, extra []byte) (*conn, *http.Response, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c := &conn{
		nc:         nc,
		br:         bufio.NewReaderSize(nc, 64<<10),
		timeout:    t.timeout(),
		maxMessage: 64 << 20,
	}
	c.extendDeadline()
	if _, err := nc.Write(append(req.bytes(), extra...)); err != nil {
		stop()
		nc.Close()
		return nil, nil, fmt.Errorf("send handshake: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		stop()
		nc.Close()
		return nil, nil, fmt.Errorf("read handshake response: %w", err)
	}
	c.resp = resp
	if resp.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		stop()
		nc.Close()
		return nil, resp, nil
	}
	return c, resp, nil
}

// open performs a valid handshake, optionally offering extensions, and
// checks the 101 response. The caller closes the connection.
func open(ctx context.Context, t *Target, extensions string) (*conn, error) {
	req := newRequest(t)
	if extensions != "" {
		req.set("Sec-WebSocket-Extensions", extensions)
	}
	c, resp, err := dial(ctx, t, req, nil)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("handshake answered %s, want 101", resp.Status)
	}
	if err := checkUpgrade(req, resp); err != nil {
		c.close()
		return nil, err
	}
	ext := resp.Header.Values("Sec-WebSocket-Extensions")
	if extensions == "" {
		if len(ext) > 0 {
			c.close()
			return nil, fmt.Errorf("server accepted extensions %q nobody offered", ext)
		}
		return c, nil
	}
	offers, err := parseExtensions([]string{extensions})
	if err != nil {
		c.close()
		return nil, fmt.Errorf("our own offer %q: %w", extensions, err)
	}
	var deflateOffers []extension
	for _, o := range offers {
		if o.name == "permessage-deflate" {
			deflateOffers = append(deflateOffers, o)
		}
	}
	if c.pmd, err = negotiate(deflateOffers, ext); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// checkUpgrade verifies a 101 response against RFC 6455 section 4.2.2.
func checkUpgrade(req *request, resp *http.Response) error {
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(req.get("Sec-WebSocket-Key")); got != want {
		return fmt.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("101 with Upgrade %q, want websocket", resp.Header.Get("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fmt.Errorf("101 with Connection %q, want Upgrade", resp.Header.Get("Connection"))
	}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		offered := false
		for _, o := range strings.Split(req.get("Sec-WebSocket-Protocol"), ",") {
			if strings.TrimSpace(o) == p {
				offered = true
			}
		}
		if !offered {
			return fmt.Errorf("server selected subprotocol %q that was not offered", p)
		}
	}
	return nil
}

// headerHasToken reports whether the comma-separated header name lists token
// (case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (c *conn) close() {
	if c != nil {
		c.nc.Close()
	}
}

func (c *conn) extendDeadline() {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
}

// write sends b in one write. A failed write is remembered rather than
// reported: a server may fail the connection before reading everything we
// send, and the reads that follow tell whether it did so correctly.
func (c *conn) write(b []byte) {
	if c.writeErr != nil {
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(b); err != nil {
		c.writeErr = err
	}
}

// writeChopped sends b in writes of at most chop bytes, so the server sees
// frames split across reads.
func (c *conn) writeChopped(b []byte, chop int) {
	for len(b) > 0 && c.writeErr == nil {
		n := min(chop, len(b))
		c.write(b[:n])
		b = b[n:]
	}
}

// event is one thing the server did: sent a whole message, a control frame,
// or ended the TCP connection.
type event struct {
	kind    eventKind
	opcode  byte // opText or opBinary for a message
	payload []byte
	code    int // close code; 0 when the close frame had no payload
	reason  string
	err     error // for evEOF: why the stream ended
}

type eventKind int

const (
	evMessage eventKind = iota
	evPing
	evPong
	evClose
	evEOF
)

func (e event) String() string {
	switch e.kind {
	case evMessage:
		return fmt.Sprintf("%s message of %d bytes (%s)", opcodeName(e.opcode), len(e.payload), preview(e.payload))
	case evPing:
		return fmt.Sprintf("ping (%s)", preview(e.payload))
	case evPong:
		return fmt.Sprintf("pong (%s)", preview(e.payload))
	case evClose:
		if e.code == 0 {
			return "close frame without status code"
		}
		return fmt.Sprintf("close %d %q", e.code, e.reason)
	}
	return fmt.Sprintf("TCP closed without a close frame (%v)", e.err)
}

// preview shows the start of a payload for reasons and errors.
func preview(b []byte) string {
	const max = 24
	if len(b) == 0 {
		return "empty"
	}
	s := b
	if len(s) > max {
		s = s[:max]
	}
	out := fmt.Sprintf("%q", s)
	if !utf8.Valid(s) || bytes.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
		out = fmt.Sprintf("% x", s)
	}
	if len(b) > max {
		out += "..."
	}
	return out
}

// violation is a server frame that breaks RFC 6455; any case seeing one
// fails.
type violation struct{ msg string }

func (v *violation) Error() string { return "server broke the protocol: " + v.msg }

func violationf(format string, args ...any) error {
	return &violation{fmt.Sprintf(format, args...)}
}

// errTimeout is returned by next when the server stays silent for the
// connection's timeout.
var errTimeout = errors.New("server sent nothing")

// errCaseDeadline is returned once the case's own deadline closed the
// connection under a read.
var errCaseDeadline = errors.New("case deadline exceeded")

// next returns the server's next event. Data frames are assembled into
// messages (and decompressed); pings are answered and returned; the end of
// the TCP stream, cleanly or by reset, is an evEOF event rather than an
// error. Errors are protocol violations by the server or timeouts.
func (c *conn) next() (event, error) {
	if n := len(c.pending); n > 0 {
		e := c.pending[n-1]
		c.pending = c.pending[:n-1]
		return e, nil
	}
	for {
		c.extendDeadline()
		f, err := readFrame(c.br, c.maxMessage)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				return event{}, fmt.Errorf("%w for %s", errTimeout, c.timeout)
			case errors.Is(err, net.ErrClosed):
				return event{}, errCaseDeadline
			case errors.Is(err, io.EOF), isReset(err):
				return event{kind: evEOF, err: err}, nil
			case errors.Is(err, errShortFrame):
				return event{}, violationf("TCP closed in the middle of a frame")
			}
			return event{}, violationf("%v", err)
		}
		if f.masked {
			return event{}, violationf("masked frame from the server (%v)", f)
		}
		if f.rsv&^c.allowedRSV(f) != 0 {
			return event{}, violationf("RSV bits %d set without a negotiated extension (%v)", f.rsv, f)
		}
		if isControl(f.opcode) {
			if !f.fin || len(f.payload) > maxControlPayloadLen {
				return event{}, violationf("malformed control frame (%v)", f)
			}
		}
		switch f.opcode {
		case opPing:
			c.write(encode(pongFrame(f.payload)))
			return event{kind: evPing, payload: f.payload}, nil
		case opPong:
			return event{kind: evPong, payload: f.payload}, nil
		case opClose:
			return closeEvent(f.payload)
		case opText, opBinary:
			if c.msgParts != nil {
				return event{}, violationf("new %v while a fragmented message is unfinished", f)
			}
			c.msgOp = f.opcode
			c.msgCompressed = f.rsv&rsv1 != 0
			c.msgParts = [][]byte{}
			c.msgLen = 0
		case opContinuation:
			if c.msgParts == nil {
				return event{}, violationf("continuation frame with no message to continue")
			}
		default:
			return event{}, violationf("reserved opcode %d", f.opcode)
		}
		c.msgParts = append(c.msgParts, f.payload)
		c.msgLen += int64(len(f.payload))
		if c.msgLen > c.maxMessage {
			return event{}, violationf("message over %d bytes", c.maxMessage)
		}
		if !f.fin {
			continue
		}
		data := bytes.Join(c.msgParts, nil)
		c.msgParts = nil
		if c.msgCompressed {
			data, err = c.pmd.decompress(data, c.maxMessage)
			if err != nil {
				return event{}, violationf("compressed message does not inflate: %v", err)
			}
		}
		if c.msgOp == opText && !utf8.Valid(data) {
			return event{}, violationf("text message that is not valid UTF-8: %s", preview(data))
		}
		return event{kind: evMessage, opcode: c.msgOp, payload: data}, nil
	}
}

// allowedRSV is the RSV bits the server may set on f: RSV1 on the first
// frame of a data message once permessage-deflate is negotiated.
func (c *conn) allowedRSV(f frame) byte {
	if c.pmd != nil && (f.opcode == opText || f.opcode == opBinary) {
		return rsv1
	}
	return 0
}

// closeEvent decodes and checks a close frame's body (RFC 6455 section 5.5.1
// and 7.4): the server may only send codes defined for the wire.
func closeEvent(p []byte) (event, error) {
	e := event{kind: evClose}
	switch {
	case len(p) == 0:
		return e, nil
	case len(p) == 1:
		return e, violationf("close frame with a 1-byte payload")
	}
	e.code = int(binary.BigEndian.Uint16(p))
	e.reason = string(p[2:])
	if !validCloseCode(e.code) {
		return e, violationf("close frame with code %d, not allowed on the wire", e.code)
	}
	if !utf8.ValidString(e.reason) {
		return e, violationf("close reason is not valid UTF-8: %s", preview(p[2:]))
	}
	return e, nil
}

// validCloseCode reports whether code may appear in a close frame: the RFC
// 6455 codes meant for the wire, the IANA-registered 1012-1014, and the
// 3000-4999 ranges for libraries and applications.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// waitReadable waits up to d for the server to send something, without
// consuming it. It reports false when d passed in silence.
func (c *conn) waitReadable(d time.Duration) bool {
	c.nc.SetReadDeadline(time.Now().Add(d))
	_, err := c.br.Peek(1)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
