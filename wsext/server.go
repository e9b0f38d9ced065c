package wsext

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Defaults of the global settings, as in the spec.
const (
	DefaultMaxMsgSize      = 262144
	DefaultTimeout         = 40 * time.Second
	DefaultMaxBackpressure = 1 << 20
)

// closeGrace bounds the close handshake: a peer that has not answered our
// close frame within it is disconnected.
const closeGrace = 3 * time.Second

// Options are a Server's fixed settings; the zero value is ready to use.
type Options struct {
	// MaxBackpressure is the most bytes that may wait to be sent to one
	// connection. A Write that would queue more fails with ErrBackpressure
	// and the connection is closed with ClosePolicyViolation, so one stuck
	// reader never holds up a writer. 0 means DefaultMaxBackpressure.
	MaxBackpressure int
	// Compression enables permessage-deflate (RFC 7692) when a client offers it.
	Compression bool
	// CompressionLevel is the flate level, 1 (fastest, the default) to 9.
	CompressionLevel int
	// CompressionThreshold is the smallest message worth compressing;
	// 0 means 256 bytes. Shorter ones are sent uncompressed.
	CompressionThreshold int
	// CheckOrigin accepts or refuses (403) an upgrade by its Origin header;
	// nil accepts a missing Origin or one naming the request's host.
	CheckOrigin func(ctx *fasthttp.RequestCtx) bool
	// Subprotocols are the server's subprotocols in preference order; the
	// first one the client also offers is chosen.
	Subprotocols []string
	// Logger receives the server's rare diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// Workers bounds the goroutines that run callbacks for connections with
	// bytes to read; 0 means 8 per CPU.
	Workers int
	// Engine carries published messages between processes; nil keeps them in
	// this process.
	Engine Engine
	// GoroutinePerConn runs every connection on its own goroutine instead of
	// the shared poller, the mode TLS connections always use.
	GoroutinePerConn bool
}

// Server owns a set of WebSocket connections: their settings, the registry
// behind Count and Each, and their shutdown. It is the spec's global
// Websocket object; most programs use the package-level Default.
type Server struct {
	opts      Options
	upgrader  websocket.FastHTTPUpgrader
	log       *slog.Logger
	maxMsg    atomic.Int64
	timeout   atomic.Int64 // time.Duration
	shutdown  atomic.Bool
	nextUUID  atomic.Uint64
	reg       registry
	now       atomic.Int64 // coarse clock in seconds, ticked by the reaper
	startOnce sync.Once
	done      chan struct{} // closed when the last connection ended after Shutdown
	stats     counters
	pubsub    pubsub
	eachQ     eachQueue
}

// NewServer returns a Server with the default settings.
func NewServer(opts Options) *Server {
	if opts.MaxBackpressure <= 0 {
		opts.MaxBackpressure = DefaultMaxBackpressure
	}
	if opts.CompressionLevel == 0 {
		opts.CompressionLevel = 1
	}
	if opts.CompressionThreshold <= 0 {
		opts.CompressionThreshold = 256
	}
	if opts.Workers <= 0 {
		opts.Workers = 8 * runtime.GOMAXPROCS(0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger}
	s.maxMsg.Store(DefaultMaxMsgSize)
	s.timeout.Store(int64(DefaultTimeout))
	s.now.Store(time.Now().Unix())
	s.reg.init()
	s.pubsub.init(s)
	s.eachQ.run = s.runEach
	s.upgrader = websocket.FastHTTPUpgrader{
		// The library's own reader is never used, only its handshake: keep
		// the buffers it makes per upgrade minimal.
		ReadBufferSize:  1,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    opts.Subprotocols,
		CheckOrigin:     opts.CheckOrigin,
		Error:           handshakeFailed,
	}
	return s
}

// MaxMsgSize returns the incoming message size limit in bytes.
func (s *Server) MaxMsgSize() int64 { return s.maxMsg.Load() }

// SetMaxMsgSize sets the incoming message size limit; it applies from the
// next message on every connection. A message over it (after decompression)
// closes its connection with CloseMessageTooBig.
func (s *Server) SetMaxMsgSize(n int64) {
	if n < 1 {
		n = 1
	}
	s.maxMsg.Store(n)
}

// Timeout returns the idle time after which a ping is sent.
func (s *Server) Timeout() time.Duration { return time.Duration(s.timeout.Load()) }

// SetTimeout sets the idle time after which a ping is sent to a connection;
// a connection that then stays silent for another d is closed. Each
// connection keeps the value current when it opened. 0 disables pings.
func (s *Server) SetTimeout(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s.timeout.Store(int64(d))
}

// Count returns the number of open connections of this server in this
// process.
func (s *Server) Count() int { return int(s.reg.count.Load()) }

// Each runs task(ws, arg) for every open connection of the server in this
// process except originator (every one when originator is nil), then
// onFinish(originator, arg) once, after every task ran. It returns at once:
// the tasks run on the server's Each goroutine, one Each call after the
// other in the order they were made, so messages broadcast with Each arrive
// in order. A task for a connection never runs while one of that
// connection's callbacks does, nor does onFinish for the originator.
// onFinish may be nil.
func (s *Server) Each(originator *Conn, task func(ws *Conn, arg any), arg any, onFinish func(originator *Conn, arg any)) {
	s.eachQ.push(eachJob{originator, task, arg, onFinish})
}

func (s *Server) runEach(j eachJob) {
	s.reg.each(func(c *Conn) {
		if c == j.originator {
			return
		}
		c.cbMu.Lock()
		defer c.cbMu.Unlock()
		defer s.recoverPanic(c)
		if c.state.Load() < stateClosed && c.attached {
			j.task(c, j.arg)
		}
	})
	if j.onFinish != nil {
		if o := j.originator; o != nil {
			o.cbMu.Lock()
			defer o.cbMu.Unlock()
		}
		defer s.recoverPanic(j.originator)
		j.onFinish(j.originator, j.arg)
	}
}

// Shutdown stops the server: new upgrades are refused (503), every open
// connection gets OnShutdown, then a close frame with CloseGoingAway, then
// OnClose once its peer answered or closeGrace passed. It returns when every
// connection has ended, or ctx.Err() when ctx ends first, after closing the
// rest at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	var wg sync.WaitGroup
	s.reg.each(func(c *Conn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cbMu.Lock()
			if c.state.Load() == stateOpen && c.settings.OnShutdown != nil {
				c.safely(c.settings.OnShutdown)
			}
			c.cbMu.Unlock()
			c.CloseWithCode(CloseGoingAway, "server shutting down")
		}()
	})
	wg.Wait()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.Count() > 0 {
		select {
		case <-ctx.Done():
			s.reg.each(func(c *Conn) { c.abort() })
			for s.Count() > 0 {
				time.Sleep(5 * time.Millisecond)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// start runs the reaper once the first connection opens.
func (s *Server) start() {
	s.startOnce.Do(func() { go s.reap() })
}

// reap ticks the coarse clock and enforces the idle and close timeouts. A
// single goroutine scanning every connection once a second costs less than a
// timer per connection, and the spec allows a fuzzy second or two.
func (s *Server) reap() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for t := range tick.C {
		now := t.Unix()
		s.now.Store(now)
		s.reg.each(func(c *Conn) { c.checkTimeouts(now) })
	}
}
