package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/internal/ratelog"
	"github.com/wsd-server/wsd/wsext"
	"golang.org/x/sys/unix"
)

// connLimiter enforces --max-conns and --max-conns-per-ip over every
// connection of the worker, HTTP and WebSocket alike. fasthttp's own limits
// cannot: a connection stops counting for them the moment it is upgraded,
// so a worker behind them accepts WebSockets without bound.
//
// A connection takes its slot when it is accepted and keeps it until both
// the socket and, if it was upgraded, the WebSocket have ended: on the
// shared poller the WebSocket lives on a duplicate of the socket long after
// fasthttp closed the original.
type connLimiter struct {
	max, perIP int
	tls        bool // refused connections are closed without an answer
	pid        string
	log        *slog.Logger

	warn *ratelog.Limiter // a flood of refusals is logged once a minute

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int

	refused   atomic.Uint64
	answering atomic.Int32 // goroutines writing a 503 to a refused connection
}

// maxAnswering bounds the goroutines that answer refused connections; past
// it, a refused connection is closed without an answer, so that a flood
// costs no more than the accept.
const maxAnswering = 64

// refuseLinger is how long a refused connection may take to read its 503
// before it is closed.
const refuseLinger = time.Second

func newConnLimiter(maxConns, perIP int, tls bool, pid string, log *slog.Logger) *connLimiter {
	return &connLimiter{max: maxConns, perIP: perIP, tls: tls, pid: pid, log: log,
		warn: ratelog.New(log, time.Minute), byIP: make(map[netip.Addr]int)}
}

// The descriptors a worker keeps for itself, out of --max-conns's reach:
// the listener and its spare (accept.go), the poller's and Go's epoll
// descriptors and pipes, the master's pipes and sockets, the log files,
// the pub/sub engine's connections (go-redis pools up to 10 per CPU), and
// the descriptors that come and go with the connections: static files held
// by fasthttp's file cache, the duplicate each upgrade makes for a moment,
// and up to maxAnswering refused connections being answered.
// minReserve covers a small host; a big limit keeps a sixteenth.
const (
	minReserve     = 128
	reserveDivisor = 16
)

// maxConnsFor returns --max-conns for the configured value set (0: auto)
// and the open-file limit nofile: auto is nofile less the reserve (never
// below half of nofile, so that a small limit still serves), and a larger
// explicit value is lowered to it (clamped reports that).
func maxConnsFor(set int, nofile uint64) (n int, clamped bool) {
	lim := int(min(nofile, math.MaxInt32))
	auto := max(lim-max(minReserve, lim/reserveDivisor), lim/2, 1)
	switch {
	case set <= 0:
		return auto, false
	case set > auto:
		return auto, true
	}
	return set, false
}

// resolveMaxConns returns --max-conns for the configured value (0: auto)
// under the process's open-file limit. Go raises the soft limit to the hard
// one at start; it is raised here again in case it was not. An explicit
// value above what the limit allows is lowered, with a warning: the worker
// would otherwise run out of descriptors before the limit is reached.
func resolveMaxConns(set int, log *slog.Logger) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		n := set
		if n <= 0 {
			n = fasthttp.DefaultConcurrency
		}
		log.Warn("cannot read the open-file limit (RLIMIT_NOFILE); max-conns does not follow it",
			"max-conns", n, "err", err)
		return n
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	n, clamped := maxConnsFor(set, rl.Cur)
	if clamped {
		log.Warn(fmt.Sprintf("max-conns %d is more than the open-file limit (RLIMIT_NOFILE) %d allows, "+
			"less the descriptors the worker keeps for itself; using %d", set, rl.Cur, n),
			"max-conns", set, "open_files_limit", rl.Cur, "using", n)
	}
	return n
}

// listen wraps ln so that every connection it accepts is counted, and the
// ones over a limit are refused before fasthttp sees them.
func (l *connLimiter) listen(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l}
}

// Refused returns the number of connections refused for a limit.
func (l *connLimiter) Refused() uint64 { return l.refused.Load() }

// Open returns the number of connections holding a slot.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// acquire takes a slot for a connection from ip (invalid when the peer has
// no IP address); it returns the reason of a refusal, or "".
func (l *connLimiter) acquire(ip netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return "too many connections"
	}
	if ip.IsValid() && l.perIP > 0 {
		if l.byIP[ip] >= l.perIP {
			return "too many connections from your address"
		}
		l.byIP[ip]++
	}
	l.total++
	return ""
}

func (l *connLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if ip.IsValid() && l.perIP > 0 {
		if n := l.byIP[ip] - 1; n > 0 {
			l.byIP[ip] = n
		} else {
			delete(l.byIP, ip)
		}
	}
}

// refuse ends a connection over a limit. A plain connection is told why:
// its request is read (a client that gets an answer before it has asked
// takes it for a broken connection), answered with a 503 and
// Connection: close, and the write side shut before a short drain, so that
// closing does not reset the connection before the client has read the
// answer. A TLS connection is closed at once: answering would need a
// handshake, the work a flood should not buy.
func (l *connLimiter) refuse(c net.Conn, reason string) {
	l.refused.Add(1)
	// Allow first: a flood costs no formatting for the lines not written.
	if ok, suppressed := l.warn.Allow("refuse"); ok {
		l.log.Warn("refusing connections", "reason", reason, "remote", c.RemoteAddr().String(),
			"max_conns", l.max, "max_conns_per_ip", l.perIP, "suppressed", suppressed)
	}
	if l.tls {
		c.Close()
		return
	}
	if l.answering.Add(1) > maxAnswering {
		l.answering.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer l.answering.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(refuseLinger))
		readHead(c)
		body := "503 Service Unavailable: " + reason + "\n"
		c.SetDeadline(time.Now().Add(refuseLinger))
		_, err := io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\n"+
			"Server: wsd\r\n"+
			"Wsd-Worker: "+l.pid+"\r\n"+
			"Content-Type: text/plain; charset=utf-8\r\n"+
			"Content-Length: "+strconv.Itoa(len(body))+"\r\n"+
			"Retry-After: 1\r\n"+
			"Connection: close\r\n\r\n"+body)
		if err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// readHead reads until the end of a request's header block, 8 KiB, an
// error or the connection's deadline, whichever comes first.
func readHead(c net.Conn) {
	var buf [8 << 10]byte
	n := 0
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if bytes.Contains(buf[max(0, n-k-3):n], []byte("\r\n\r\n")) || err != nil {
			return
		}
	}
}

// track makes an upgrade keep its connection's slot until the WebSocket
// ends. It relies on wsext's order of callbacks: OnOpen runs before
// fasthttp closes the upgraded socket, and OnClose exactly once after it
// (or at once when the upgrade fails). A connection that never opened by
// the time its socket closes (fasthttp wrote the 101 but did not hand the
// connection over) gives its slot back then.
//
// The callbacks hold the slot, not the connection: on the poller the
// socket fasthttp accepted is closed and gone while the WebSocket lives.
func (l *connLimiter) track(ctx *fasthttp.RequestCtx, s wsext.Settings) wsext.Settings {
	lc := findLimitConn(ctx.Conn())
	if lc == nil || !lc.slot.ws.CompareAndSwap(wsNone, wsPending) {
		return s
	}
	sl := lc.slot
	sl.refs.Add(1)
	onOpen, onClose := s.OnOpen, s.OnClose
	s.OnOpen = func(ws *wsext.Conn) {
		sl.ws.CompareAndSwap(wsPending, wsOpen)
		if onOpen != nil {
			onOpen(ws)
		}
	}
	s.OnClose = func(ws *wsext.Conn) {
		if st := sl.ws.Swap(wsNone); st == wsPending || st == wsOpen {
			sl.unref()
		}
		if onClose != nil {
			onClose(ws)
		}
	}
	return s
}

func findLimitConn(c net.Conn) *limitConn {
	for c != nil {
		switch v := c.(type) {
		case *limitConn:
			return v
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

type limitListener struct {
	net.Listener
	l *connLimiter
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if reason := ll.l.acquire(ip); reason != "" {
			ll.l.refuse(c, reason)
			continue
		}
		sl := &slot{l: ll.l, ip: ip}
		sl.refs.Store(1)
		return &limitConn{Conn: c, slot: sl}, nil
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// WebSocket states of a slot.
const (
	wsNone    int32 = iota // not upgraded, or the WebSocket ended
	wsPending              // upgrade accepted, WebSocket not open yet
	wsOpen                 // WebSocket open: it holds a reference
)

// slot is one connection's place under the limits. It has one reference
// for the socket and one for its WebSocket while there is one, and is
// given back when the last goes.
type slot struct {
	l    *connLimiter
	ip   netip.Addr
	refs atomic.Int32
	ws   atomic.Int32
}

func (sl *slot) unref() {
	if sl.refs.Add(-1) == 0 {
		sl.l.release(sl.ip)
	}
}

// limitConn is an accepted connection holding a slot.
type limitConn struct {
	net.Conn
	slot   *slot
	closed atomic.Bool
	linger atomic.Bool // the client may still be sending: close gently
}

func (c *limitConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	if c.linger.Load() {
		a := &c.slot.l.answering
		if a.Add(1) <= maxAnswering {
			go c.lingerClose()
			return nil
		}
		a.Add(-1)
	}
	return c.release()
}

// lingerClose closes a connection answered before its request was read,
// as a 413 or 431 is: closing with unread bytes would reset the
// connection, and a reset can reach the client before it has read the
// answer. So the write side is shut after the answer and the rest of the
// request discarded for a moment first.
func (c *limitConn) lingerClose() {
	defer c.slot.l.answering.Add(-1)
	c.CloseWrite()
	c.Conn.SetReadDeadline(time.Now().Add(refuseLinger))
	io.Copy(io.Discard, io.LimitReader(c.Conn, 4<<20))
	c.release()
}

func (c *limitConn) release() error {
	err := c.Conn.Close()
	if c.slot.ws.CompareAndSwap(wsPending, wsNone) {
		c.slot.unref() // the upgrade never became a WebSocket
	}
	c.slot.unref()
	return err
}

// SyscallConn lets wsext's poller take the socket over; without it every
// WebSocket would need a goroutine of its own.
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite half-closes the socket, as wsext does after its close frame.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// httpError answers a request fasthttp could not read: 431 for a header
// block over --max-header-size, 413 for a body over --max-body-size, 408
// when --header-timeout passed first, 400 for anything malformed.
// fasthttp's default says 400 for an oversized body.
func (w *Worker) httpError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		ctx.Error("431 Request Header Fields Too Large\n", fasthttp.StatusRequestHeaderFieldsTooLarge)
		lingerOnClose(ctx)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.Error("413 Request Entity Too Large\n", fasthttp.StatusRequestEntityTooLarge)
		lingerOnClose(ctx)
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("408 Request Timeout\n", fasthttp.StatusRequestTimeout)
	default:
		ctx.Error("400 Bad Request\n", fasthttp.StatusBadRequest)
	}
	ctx.Response.Header.Set("Wsd-Worker", w.pid)
}

func lingerOnClose(ctx *fasthttp.RequestCtx) {
	if lc := findLimitConn(ctx.Conn()); lc != nil {
		lc.linger.Store(true)
	}
}
