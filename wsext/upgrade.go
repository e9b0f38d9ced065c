package wsext

import (
	"encoding/base64"
	"io"
	"net"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Upgrade turns ctx's request into a WebSocket connection with the given
// callbacks. Headers and cookies already set on ctx.Response are sent with
// the 101 response. The connection starts once the handler returns and
// fasthttp has written the 101; OnOpen comes first.
//
// A request that is not a valid upgrade gets its HTTP error (400, 403 for a
// refused origin, 405 for a method other than GET, 426 with
// Sec-WebSocket-Version: 13 for another version, 503 while shutting down),
// OnClose is called, and a *HandshakeError is returned.
func (s *Server) Upgrade(ctx *fasthttp.RequestCtx, settings Settings) error {
	c := &Conn{
		srv:      s,
		settings: settings,
		udata:    settings.UData,
		uuid:     s.nextUUID.Add(1),
		fd:       -1,
		t:        streamTransport{},
		regIdx:   -1,
		timeout:  int64(s.Timeout()),
		// Known before the handshake, so that OnClose after a failed
		// upgrade can log it too.
		remote: ctx.RemoteAddr(),
	}
	if status, reason := s.precheck(ctx); status != 0 {
		handshakeFailed(ctx, status, errString(reason))
		return s.failUpgrade(c, status, reason)
	}
	err := s.upgrader.Upgrade(ctx, func(wc *websocket.Conn) { s.attach(c, wc.NetConn()) })
	if err != nil {
		return s.failUpgrade(c, ctx.Response.StatusCode(), err.Error())
	}
	if s.opts.Compression {
		if answer, ok := negotiateDeflate(string(ctx.Request.Header.Peek("Sec-WebSocket-Extensions"))); ok {
			ctx.Response.Header.Set("Sec-WebSocket-Extensions", answer)
			c.rs.deflate = true
		}
	}
	c.subprotocol = string(ctx.Response.Header.Peek("Sec-WebSocket-Protocol"))
	s.stats.upgrades.Add(1)
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

// precheck rejects what the library's upgrader gets wrong or cannot know:
// the version answer must be 426 with the supported version (RFC 6455
// section 4.4), and the key must be 16 base64-encoded bytes (section 4.1).
func (s *Server) precheck(ctx *fasthttp.RequestCtx) (int, string) {
	if s.shutdown.Load() {
		return fasthttp.StatusServiceUnavailable, "server is shutting down"
	}
	if !ctx.IsGet() || !websocket.FastHTTPIsWebSocketUpgrade(ctx) {
		return 0, "" // the upgrader answers these
	}
	if !ctx.Request.Header.IsHTTP11() {
		return fasthttp.StatusBadRequest, "a WebSocket handshake needs HTTP/1.1"
	}
	if v := ctx.Request.Header.Peek("Sec-WebSocket-Version"); string(v) != "13" {
		return fasthttp.StatusUpgradeRequired, "unsupported WebSocket version"
	}
	key := ctx.Request.Header.Peek("Sec-WebSocket-Key")
	if len(key) > 0 {
		// 24 characters decode to at most 18 bytes: check the length first,
		// since Decode panics when its destination is too small.
		var raw [18]byte
		if len(key) != 24 {
			return fasthttp.StatusBadRequest, "Sec-WebSocket-Key is not 16 base64-encoded bytes"
		}
		if n, err := base64.StdEncoding.Decode(raw[:], key); err != nil || n != 16 {
			return fasthttp.StatusBadRequest, "Sec-WebSocket-Key is not 16 base64-encoded bytes"
		}
	}
	return 0, ""
}

// handshakeFailed writes a handshake error response; it is also the
// library upgrader's Error function.
func handshakeFailed(ctx *fasthttp.RequestCtx, status int, reason error) {
	ctx.Error(fasthttp.StatusMessage(status)+": "+reason.Error()+"\n", status)
	ctx.Response.Header.Set("Sec-WebSocket-Version", "13")
	if status == fasthttp.StatusMethodNotAllowed {
		ctx.Response.Header.Set("Allow", "GET")
	}
	if status == fasthttp.StatusUpgradeRequired {
		ctx.Response.Header.Set("Upgrade", "websocket")
		ctx.Response.Header.Set("Connection", "Upgrade")
	}
}

func (s *Server) failUpgrade(c *Conn, status int, why string) error {
	reason := failReason(status)
	s.stats.upgradeFailures[reason].Add(1)
	c.state.Store(stateClosed)
	if c.settings.OnClose != nil {
		c.safely(c.settings.OnClose)
	}
	return &HandshakeError{Status: status, Kind: reason, Reason: why}
}

// attach runs on fasthttp's hijack goroutine once the 101 is out.
func (s *Server) attach(c *Conn, hj net.Conn) {
	s.start()
	c.lastActive = s.mono()
	if a := hj.RemoteAddr(); a != nil {
		c.remote = a
	}
	raw := hj
	if u, ok := hj.(interface{ UnsafeConn() net.Conn }); ok {
		// fasthttp ignores Close on the hijacked wrapper; the real
		// connection is what Close must reach.
		raw = u.UnsafeConn()
	}
	if !s.opts.GoroutinePerConn {
		if fd, pending, ok := pollAttach(hj, raw); ok {
			// The polled connection keeps only its descriptor: fasthttp
			// closes its net.Conn, which nothing here may keep alive.
			s.openPolled(c, fd, pending)
			putBuf(pending)
			hj.Close() // closes only when the server keeps hijacked connections
			return
		}
	}
	c.raw = raw
	c.raw.SetDeadline(time.Time{})
	c.cbMu.Lock()
	c.attached = true
	s.reg.add(c)
	if c.settings.OnOpen != nil {
		c.safely(c.settings.OnOpen)
	}
	s.lateShutdownLocked(c)
	c.unlock()
	c.serveStream(hj)
}

func (s *Server) openPolled(c *Conn, fd int, pending []byte) {
	c.fd, c.t = fd, pollTransport{}
	c.cbMu.Lock()
	defer c.unlock()
	c.attached = true
	s.reg.add(c)
	if err := s.register(c); err != nil {
		s.log.Error("wsext: cannot poll connection", "conn", c.String(), "err", err)
		c.finishLocked()
		return
	}
	if c.settings.OnOpen != nil {
		c.safely(c.settings.OnOpen)
	}
	if s.lateShutdownLocked(c) {
		return
	}
	if len(pending) > 0 && c.state.Load() != stateClosed {
		c.input(pending)
	}
}

// serveStream is the goroutine-per-connection mode, for connections the
// poller cannot take (TLS): it reads until the connection ends.
func (c *Conn) serveStream(r io.Reader) {
	buf := getBuf(8192)
	buf = buf[:cap(buf)]
	defer putBuf(buf)
	for {
		n, err := r.Read(buf)
		if n > 0 && c.streamChunk(buf[:n]) {
			return
		}
		c.waitEachWindow()
		if err != nil {
			c.cbMu.Lock()
			c.finishLocked()
			c.unlock()
			return
		}
	}
}

// lateShutdownLocked handles a connection whose handshake was under way
// when Shutdown began: it opened, so it gets the same OnShutdown and close
// 1001 as every other connection instead of being dropped.
func (s *Server) lateShutdownLocked(c *Conn) bool {
	if !s.shutdown.Load() {
		return false
	}
	if c.settings.OnShutdown != nil {
		c.safely(c.settings.OnShutdown)
	}
	c.CloseWithCode(CloseGoingAway, "server shutting down")
	return true
}

// streamChunk parses bytes a stream connection read; it reports whether the
// connection is over.
func (c *Conn) streamChunk(p []byte) (closed bool) {
	c.cbMu.Lock()
	defer c.unlock()
	if c.state.Load() == stateClosed {
		return true
	}
	return c.input(p)
}
