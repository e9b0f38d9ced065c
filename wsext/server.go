package wsext

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/wsd-server/wsd/internal/history"
	"github.com/wsd-server/wsd/internal/ratelog"
)

// Defaults of the global settings, as in the spec.
const (
	DefaultMaxMsgSize      = 262144
	DefaultTimeout         = 40 * time.Second
	DefaultMaxBackpressure = 1 << 20
	// DefaultHistoryMaxBytes bounds all channels' history by default.
	DefaultHistoryMaxBytes = 64 << 20
)

// MaxMsgSizeLimit is the largest value SetMaxMsgSize takes: 2^62 bytes, far
// beyond memory, and half the int64 range so that limits plus slack fit.
const MaxMsgSizeLimit = 1 << 62

// closeGrace bounds the close handshake: a peer that has not answered our
// close frame within it is disconnected.
const closeGrace = 3 * time.Second

// Options are a Server's settings at creation; the zero value is ready to
// use.
type Options struct {
	// MaxMsgSize is the initial incoming message size limit in bytes; 0
	// means DefaultMaxMsgSize. SetMaxMsgSize changes it later.
	MaxMsgSize int64
	// Timeout is the initial idle timeout (see SetTimeout); 0 means
	// DefaultTimeout, and a negative value disables pings. SetTimeout
	// changes it later.
	Timeout time.Duration
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
	// Engine carries published messages between processes; nil keeps them in
	// this process.
	Engine Engine
	// HistorySize is how many recent messages each pub/sub channel keeps,
	// so that a subscriber coming back can get what it missed
	// (SubscribeOptions.Since); 0 keeps none. Without an Engine the Server
	// keeps the history itself. With an Engine that is a HistoryEngine, the
	// engine keeps it (configured on the engine's side; here any value
	// above 0 turns it on) and numbers every publish; with another Engine
	// there is no history, since the other processes' messages would be
	// missing from it.
	HistorySize int
	// HistoryTTL is how long a message stays in the history; 0 means as
	// long as it is among the last HistorySize. Without an Engine only.
	HistoryTTL time.Duration
	// HistoryMaxBytes bounds the history of all channels together
	// (payloads plus 64 bytes a message); over it, the least recently
	// published channels lose their history (and change epoch). 0 means
	// DefaultHistoryMaxBytes. Without an Engine only.
	HistoryMaxBytes int64
	// PresenceEvents publishes a join and a leave event on a channel
	// whenever a subscription listed in its presence
	// (SubscribeOptions.Presence) begins and ends, for the subscribers that
	// ask for them (SubscribeOptions.PresenceEvents, OnPresence).
	PresenceEvents bool
	// GoroutinePerConn runs every connection on its own goroutine instead of
	// the shared event loops, the mode TLS connections always use: the way
	// out for callbacks that must block (see the Poller section of the
	// package documentation).
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
	epoch     time.Time // the zero of mono
	logs      *ratelog.Limiter
	startOnce sync.Once
	stats     counters
	pubsub    pubsub
	hist      *history.Store // nil without history, or when histEng keeps it
	histEng   HistoryEngine  // the engine, when it keeps the history
	presEng   PresenceEngine // the engine, when it keeps presence
	id        string         // random, names this Server's clients in presence
	// readingHistory holds a token per history being read from the engine
	// (recover.go), maxRecoveries at most.
	readingHistory chan struct{}
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
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger, epoch: time.Now(), logs: ratelog.New(opts.Logger, 0)}
	s.maxMsg.Store(DefaultMaxMsgSize)
	if opts.MaxMsgSize > 0 {
		s.SetMaxMsgSize(opts.MaxMsgSize)
	}
	s.timeout.Store(int64(DefaultTimeout))
	if opts.Timeout != 0 {
		s.SetTimeout(opts.Timeout)
	}
	s.reg.init()
	s.pubsub.init(s)
	s.id = randomID()
	s.readingHistory = make(chan struct{}, maxRecoveries)
	if he, ok := opts.Engine.(HistoryEngine); ok && opts.HistorySize > 0 {
		s.histEng = he
	}
	if pe, ok := opts.Engine.(PresenceEngine); ok {
		s.presEng = pe
	}
	if opts.HistorySize > 0 && opts.Engine == nil {
		if opts.HistoryMaxBytes <= 0 {
			opts.HistoryMaxBytes = DefaultHistoryMaxBytes
		}
		s.hist = history.New(opts.HistorySize, opts.HistoryTTL, opts.HistoryMaxBytes)
	}
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
//
// n is clamped to 1..MaxMsgSizeLimit, so that the size arithmetic on
// frames announcing up to 2^63-1 bytes cannot overflow.
func (s *Server) SetMaxMsgSize(n int64) {
	n = min(max(n, 1), MaxMsgSizeLimit)
	s.maxMsg.Store(n)
}

// Timeout returns the idle time after which a ping is sent.
func (s *Server) Timeout() time.Duration { return time.Duration(s.timeout.Load()) }

// SetTimeout sets the idle time after which a ping is sent to a connection;
// a connection that then stays silent for another d is closed. Each
// connection keeps the value current when it opened. 0 disables pings.
//
// Timeouts are checked once a second (ReaperInterval): a ping comes after
// at least d of silence, never earlier, and at most a second later. A d
// under one second is rounded up to one second rather than silently
// disabling pings.
func (s *Server) SetTimeout(d time.Duration) {
	switch {
	case d < 0:
		d = 0
	case d > 0 && d < ReaperInterval:
		d = ReaperInterval
	}
	s.timeout.Store(int64(d))
}

// Count returns the number of open connections of this server in this
// process.
func (s *Server) Count() int { return int(s.reg.count.Load()) }

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
			c.unlock()
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

// ReaperInterval is how often a Server looks for idle connections and
// unanswered closes: the resolution of Timeout.
const ReaperInterval = time.Second

// mono reads the server's monotonic clock, in nanoseconds since NewServer.
func (s *Server) mono() int64 { return int64(time.Since(s.epoch)) }

// reap enforces the idle and close timeouts. A single goroutine scanning
// every connection once a second costs less than a timer per connection,
// and the spec allows a fuzzy second or two. The hot paths only flag
// activity; the reaper reads the clock.
func (s *Server) reap() {
	tick := time.NewTicker(ReaperInterval)
	defer tick.Stop()
	for range tick.C {
		now := s.mono()
		s.reg.each(func(c *Conn) { c.checkTimeouts(now) })
	}
}
