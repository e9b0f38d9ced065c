package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Options configure a Server. Every field is optional.
type Options struct {
	// Gatherer holds the master's own metrics. They are served with
	// wsd_build_info and the WorkerLabel MasterWorker.
	Gatherer prometheus.Gatherer
	// Workers lists the workers to gather at each scrape. It is called from
	// the scrape's goroutine and must be safe for that.
	Workers func() []Target
	// Ready reports why the daemon is not ready (nil when it is); /readyz
	// answers 503 with the error's text. Nil means always ready.
	Ready func() error
	// Logger receives the errors of scrapes; nil means slog.Default().
	Logger *slog.Logger
	// Timeout bounds the gathering of one worker's metrics; zero means 5s.
	Timeout time.Duration
	// Status, when set, is served as JSON by GET /status: the daemon's
	// state for tools such as `wsd reload`. It is called from the request's
	// goroutine and must be safe for that.
	Status func() any
}

// Server is the admin HTTP server: metrics and health checks. It is also a
// prometheus.Gatherer of the whole daemon.
type Server struct {
	opts   Options
	master prometheus.Gatherer // the master's metrics, labelled
	http   *http.Server
}

// New returns a Server; Serve starts it.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	own := prometheus.Gatherers{buildInfo()}
	if opts.Gatherer != nil {
		own = append(own, opts.Gatherer)
	}
	s := &Server{opts: opts, master: labelled(own, MasterWorker)}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            errorLog{opts.Logger},
		EnableOpenMetrics:   true,
		MaxRequestsInFlight: 4,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Status != nil {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			json.NewEncoder(w).Encode(opts.Status())
		})
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, "wsd admin: /metrics /healthz /readyz")
	})
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

// Serve serves on ln until Close; it returns nil then.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// Close stops the server, letting requests in flight finish within a second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		return errors.Join(err, s.http.Close())
	}
	return nil
}

// Gather gathers the master's metrics, labelled worker="master", and every
// worker's, each labelled with its slot. It implements prometheus.Gatherer.
// The error lists what could not be gathered; the families returned are
// the rest.
func (s *Server) Gather() ([]*dto.MetricFamily, error) {
	var targets []Target
	if s.opts.Workers != nil {
		targets = s.opts.Workers()
	}
	gs := gatherWorkers(targets, s.opts.Timeout)
	return append(prometheus.Gatherers{s.master}, gs...).Gather()
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			reply(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	reply(w, http.StatusOK, "ready")
}

func reply(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, text)
}

// errorLog carries promhttp's errors (an unreachable worker) to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Println(v ...any) {
	e.l.Warn("metrics scrape", "err", fmt.Sprint(v...))
}
