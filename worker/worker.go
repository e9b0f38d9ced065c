package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/internal/ratelog"
	"github.com/wsd-server/wsd/wsext"
)

// Options are what the process around a worker provides.
type Options struct {
	// Logger receives the worker's logs; nil means slog.Default().
	Logger *slog.Logger
	// Ready is called once the worker accepts connections.
	Ready func()
	// Engine carries pub/sub messages to other processes; nil keeps them in
	// this one.
	Engine wsext.Engine
	// Metrics, when set, gets the worker's Prometheus collector (WebSocket
	// and HTTP figures, see metrics.go); nil leaves requests uncounted.
	Metrics prometheus.Registerer
}

// Worker serves HTTP and WebSocket for one process.
type Worker struct {
	cfg    config.Config
	opts   Options
	log    *slog.Logger
	ws     *wsext.Server
	http   *fasthttp.Server
	pid    string
	public fasthttp.RequestHandler // static files under --public, or nil
	limit  *connLimiter            // --max-conns and --max-conns-per-ip, see limits.go
	auth   *authenticator          // subscriber tokens, see auth.go; nil when off
	sse    *sseHub                 // /sse streams, see sse.go
	accept *acceptGuard            // keeps accept errors from ending Serve, see accept.go
	// remoteHistory is set when the engine keeps the history: recovering
	// a subscriber then waits for a round trip to the master or Redis.
	remoteHistory bool
	// rlog bounds the lines that can repeat per request, connection or
	// message: one a second per kind.
	rlog *ratelog.Limiter
}

// New returns a worker for cfg; cfg must be valid.
func New(cfg config.Config, opts Options) (*Worker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Worker{cfg: cfg, opts: opts, log: opts.Logger, pid: strconv.Itoa(os.Getpid()),
		rlog: ratelog.New(opts.Logger, 0), sse: newSSEHub()}
	auth, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	w.auth = auth
	w.remoteHistory = cfg.HistorySize > 0 && opts.Engine != nil
	maxConns := resolveMaxConns(cfg.MaxConns, opts.Logger)
	w.accept = newAcceptGuard(w.rlog)
	w.ws = wsext.NewServer(wsext.Options{
		MaxBackpressure:      cfg.MaxBackpressure,
		Compression:          cfg.Compression,
		CompressionLevel:     cfg.CompressionLevel,
		CompressionThreshold: cfg.CompressionThreshold,
		CheckOrigin:          originChecker(cfg.AllowedOrigins),
		Subprotocols:         cfg.Subprotocols,
		Logger:               opts.Logger,
		Engine:               opts.Engine,
		HistorySize:          cfg.HistorySize,
		HistoryTTL:           cfg.HistoryTTL,
		PresenceEvents:       cfg.Presence,
	})
	w.ws.SetMaxMsgSize(cfg.MaxMsgSize)
	w.ws.SetTimeout(time.Duration(cfg.Timeout) * time.Second)
	// CloseOnShutdown stays off: with it, fasthttp answers an upgrade under
	// way at a stop with "Connection: close" in place of "Connection:
	// Upgrade" and never hands the connection over, a broken 101 instead of
	// the 1001 Shutdown promises. Shutdown closes idle keep-alive
	// connections anyway.
	w.http = &fasthttp.Server{
		Handler:            w.serveHTTP,
		Name:               "wsd",
		ReadBufferSize:     cfg.MaxHeaderSize,
		ReadTimeout:        cfg.HeaderTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		MaxRequestBodySize: cfg.MaxBodySize,
		Concurrency:        maxConns,
		ErrorHandler:       w.httpError,
		NoDefaultDate:      false,
		Logger:             fasthttpLogger{opts.Logger, w.rlog},
	}
	// The connection limits are w.limit's, not fasthttp's MaxConnsPerIP:
	// fasthttp stops counting a connection once it is upgraded.
	w.limit = newConnLimiter(maxConns, cfg.MaxConnsPerIP, cfg.TLSCert != "", w.pid, opts.Logger)
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("worker: tls-cert/tls-key: %w", err)
		}
		w.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.Public != "" {
		h, err := newStatic(cfg.Public, cfg.DirListing)
		if err != nil {
			return nil, err
		}
		w.public = h
	}
	if opts.Metrics != nil {
		m := newMetrics(w.ws, w.http, w.limit.Refused)
		m.accept = w.accept
		m.auth, m.sse = w.auth, w.sse
		if err := opts.Metrics.Register(m); err != nil {
			return nil, fmt.Errorf("worker: metrics: %w", err)
		}
		w.http.Handler = m.countRequests(w.http.Handler)
		if w.http.ErrorHandler != nil {
			w.http.ErrorHandler = m.countErrors(w.http.ErrorHandler)
		}
	}
	if cfg.AccessLog {
		w.http.Handler = w.logAccess(w.http.Handler)
	}
	return w, nil
}

// WebSocket returns the worker's wsext server.
func (w *Worker) WebSocket() *wsext.Server { return w.ws }

// Serve accepts connections on ln until Shutdown; it returns nil then.
// Failed accepts that may pass, as when the worker is out of descriptors,
// do not end it (see accept.go).
func (w *Worker) Serve(ln net.Listener) error {
	ln = w.accept.listen(ln)
	ln = w.limit.listen(ln)
	if w.http.TLSConfig != nil {
		ln = tls.NewListener(ln, w.http.TLSConfig)
	}
	if w.opts.Ready != nil {
		w.opts.Ready()
	}
	return w.http.Serve(ln)
}

// Shutdown stops accepting, lets HTTP requests in flight finish (an upgrade
// among them becomes a WebSocket), then gives every WebSocket OnShutdown, a
// close 1001 and OnClose; bounded by ctx. HTTP goes first so that a client
// whose connection was accepted just before the stop gets its handshake
// and a clean 1001, not a refusal. /sse streams are ended before, as the
// HTTP stop waits for them: each sends what it has queued and ends, and
// a new one is answered 503.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.sse.shutdown()
	httpErr := w.http.ShutdownWithContext(ctx)
	return errors.Join(httpErr, w.ws.Shutdown(ctx))
}

// Run serves on ln until ctx is cancelled, then stops gracefully within
// cfg.ShutdownTimeout. It returns nil after a clean stop.
func Run(ctx context.Context, cfg config.Config, ln net.Listener, opts Options) error {
	w, err := New(cfg, opts)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- w.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("worker: serve: %w", err)
	case <-ctx.Done():
	}
	w.log.Info("stopping", "connections", w.ws.Count())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = w.Shutdown(sctx)
	if serr := <-served; serr != nil {
		err = errors.Join(err, serr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("worker: graceful stop passed shutdown-timeout %s: %w", cfg.ShutdownTimeout, err)
	}
	return err
}

// fasthttpLogger takes fasthttp's own lines, at debug level. Some come once
// per connection ("error when serving connection"), so each format string,
// a constant of fasthttp's, is a kind of its own: one line a second.
type fasthttpLogger struct {
	log *slog.Logger
	rl  *ratelog.Limiter
}

func (f fasthttpLogger) Printf(format string, args ...any) {
	if f.log.Enabled(context.Background(), slog.LevelDebug) {
		f.rl.Log(slog.LevelDebug, format, "fasthttp: "+fmt.Sprintf(format, args...))
	}
}
