package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/admin"
	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/internal/workerproto"
	"github.com/wsd-server/wsd/pubsub/cluster"
	"github.com/wsd-server/wsd/pubsub/redis"
	"github.com/wsd-server/wsd/wsext"
)

// This file assembles a worker process, the body of the hidden `wsd worker`
// subcommand that the master re-executes for each slot: the descriptors it
// inherits, its pub/sub engine, its metrics registry, its heartbeats and
// its two ways of stopping. The master's side of the same protocol
// (package internal/workerproto) is in package master.

// errMasterGone is the cause of a worker's stop when its control pipe ends,
// which happens only when every copy of the write end is closed: the master
// died without stopping its workers (kill -9, a crash, the OOM killer).
var errMasterGone = errors.New("worker: the master process is gone")

// relayDialTimeout bounds a worker's wait for its first connection to the
// master's pub/sub relay.
const relayDialTimeout = 10 * time.Second

// relayReplyTimeout is how long a worker waits for the master to answer a
// relay request before asking again. A request can go unanswered when the
// master re-executes itself between reading it and answering.
const relayReplyTimeout = 2 * time.Second

// Inherited are the descriptors a worker process gets from its master.
type Inherited struct {
	// Listener is the slot's listening socket.
	Listener net.Listener
	// Control is the read end of the control pipe: a workerproto.Spec,
	// then workerproto.Control messages; its end means the master is gone.
	Control io.ReadCloser
	// Status is the write end of the status pipe: "ready", then heartbeats.
	Status *os.File
	// Broker is the worker's end of its broker socket, or nil when the
	// master is too old to pass one (the Spec says which).
	Broker *net.UnixConn
}

// Inherit takes over the descriptors the master passes a worker process
// (see package internal/workerproto). The broker socket is taken only if
// the descriptor is open; RunProcess uses it if the Spec says so.
func Inherit() (Inherited, error) {
	if !isFD(workerproto.ListenFD) || !isFD(workerproto.ControlFD) || !isFD(workerproto.StatusFD) {
		return Inherited{}, errors.New("worker: `wsd " + workerproto.Command + "` runs only under `wsd serve`, which hands it its sockets")
	}
	lnFile := os.NewFile(workerproto.ListenFD, "wsd-listener")
	ln, err := net.FileListener(lnFile)
	lnFile.Close() // ln holds its own descriptor
	if err != nil {
		return Inherited{}, fmt.Errorf("worker: inherited listener: %w", err)
	}
	in := Inherited{
		Listener: ln,
		Control:  os.NewFile(workerproto.ControlFD, "wsd-control"),
		Status:   os.NewFile(workerproto.StatusFD, "wsd-status"),
	}
	if isFD(workerproto.BrokerFD) {
		if in.Broker, err = workerproto.FDConn(workerproto.BrokerFD, "wsd-broker"); err != nil {
			in.Broker = nil // not a socket: an older master left something else there
		}
	}
	return in, nil
}

// isFD reports whether fd is an open descriptor.
func isFD(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// RunProcess is the body of a worker process. It reads its Spec from
// in.Control, builds the worker (with the pub/sub engine and the metrics
// registry the configuration asks for) and serves on in.Listener until it
// is told to stop:
//
//   - SIGTERM or SIGINT, or the end of the control pipe (the master died):
//     a graceful stop within shutdown-timeout, every WebSocket closed
//     with 1001 at once (Worker.Shutdown);
//   - a drain message on the control pipe, which the master sends the
//     worker it replaces in a reload or an upgrade: 1012 closes spread
//     over the message's period (Worker.Drain).
//
// Whichever comes first decides; what comes after is ignored. A worker that
// cannot start tells the master why on its status pipe before it returns
// the error. RunProcess returns nil after a clean stop.
func RunProcess(ctx context.Context, in Inherited) error {
	defer in.Listener.Close()
	defer in.Control.Close()
	if in.Broker != nil {
		defer in.Broker.Close()
	}
	dec := json.NewDecoder(in.Control)
	var spec workerproto.Spec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("worker: reading the configuration from the master: %w", err)
	}
	cfg := spec.Config
	log := cfg.Logger(os.Stderr, slog.Int("worker", os.Getpid()), slog.Int("slot", spec.Slot))
	if cfg.Threads > 0 {
		runtime.GOMAXPROCS(cfg.Threads)
	}
	fail := func(err error) error {
		in.Status.Write([]byte(workerproto.FailedLine(err)))
		return err
	}

	// SIGHUP and SIGUSR2 are the master's business; a stray one sent to every
	// wsd process (pkill -HUP wsd) must not kill the workers.
	signal.Ignore(unix.SIGHUP, unix.SIGUSR2)
	ctx, stop := signal.NotifyContext(ctx, unix.SIGTERM, unix.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	drains := make(chan workerproto.Control, 1)
	go readControl(dec, in.Control, drains, func() { cancel(errMasterGone) })

	stopBeats := make(chan struct{})
	defer close(stopBeats)
	var once sync.Once
	ready := func() {
		once.Do(func() {
			if _, err := in.Status.Write([]byte(workerproto.ReadyLine)); err != nil {
				log.Error("telling the master we are ready", "err", err)
			}
			if spec.Heartbeat > 0 {
				go sendHeartbeats(in.Status, spec.Heartbeat, stopBeats)
			} else {
				in.Status.Close()
			}
		})
	}

	var brk *workerBroker
	if spec.Broker && in.Broker != nil {
		brk = newWorkerBroker(in.Broker)
		defer brk.close()
	} else {
		log.Warn("started by an older master: no pub/sub across workers and no metrics until the next reload")
	}
	metrics, closeMetrics := processMetrics(cfg, brk)
	defer closeMetrics()
	procs := spec.Processes
	if procs <= 0 {
		procs = cfg.Processes
	}
	if procs <= 0 {
		procs = config.AvailableCPUs()
	}
	engine, closeEngine, err := pubsubEngine(ctx, cfg, procs, brk, log)
	if err != nil {
		return fail(err)
	}
	defer closeEngine()
	w, err := New(cfg, Options{Logger: log, Ready: ready, Metrics: metrics, Engine: engine})
	if err != nil {
		return fail(err)
	}

	served := make(chan error, 1)
	go func() { served <- w.Serve(in.Listener) }()
	var drain *workerproto.Control
	select {
	case err := <-served:
		return fail(fmt.Errorf("worker: serve: %w", err))
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errMasterGone) {
			log.Warn("master gone: stopping")
		}
	case msg := <-drains:
		drain = &msg
	}

	budget := cfg.ShutdownTimeout
	if drain != nil {
		budget += drain.DrainPeriod
		log.Info("draining: replaced by a reload", "connections", w.WebSocket().Count(), "period", drain.DrainPeriod)
	} else {
		log.Info("stopping", "connections", w.WebSocket().Count())
	}
	sctx, scancel := context.WithTimeout(context.Background(), budget)
	defer scancel()
	if drain != nil {
		err = w.Drain(sctx, drain.DrainPeriod)
	} else {
		err = w.Shutdown(sctx)
	}
	if serr := <-served; serr != nil {
		err = errors.Join(err, serr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("worker: graceful stop passed its time limit %s: %w", budget, err)
	}
	return err
}

// readControl reads the control messages that follow the Spec on the
// control pipe r (through dec, which may hold some of them already) and
// hands drain requests to drains. At the end of the pipe, or of what it
// can parse, it reads r to its end and calls gone.
func readControl(dec *json.Decoder, r io.Reader, drains chan<- workerproto.Control, gone func()) {
	defer gone()
	for {
		var msg workerproto.Control
		if err := dec.Decode(&msg); err != nil {
			io.Copy(io.Discard, r)
			return
		}
		if msg.Drain {
			select {
			case drains <- msg:
			default: // one is pending already
			}
		}
	}
}

// sendHeartbeats writes a heartbeat on status every interval until stop is
// closed or the write fails, which it does when a master too old to read
// heartbeats has closed its end.
func sendHeartbeats(status *os.File, interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	beat := []byte{workerproto.HeartbeatByte}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if _, err := status.Write(beat); err != nil {
			return
		}
	}
}

// pubsubEngine makes a worker's pub/sub engine: Redis when --redis is set,
// whatever the number of processes; the master's relay, reached through
// the broker socket brk, with more than one process; none (in-process)
// otherwise. The returned function closes it.
func pubsubEngine(ctx context.Context, cfg config.Config, processes int, brk *workerBroker, log *slog.Logger) (wsext.Engine, func(), error) {
	switch {
	case cfg.Redis != "":
		redis.SetLogger(log)
		e, err := redis.New(redis.Options{URL: cfg.Redis, Logger: log,
			HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, PresenceTTL: cfg.PresenceTTL})
		if err != nil {
			return nil, nil, fmt.Errorf("worker: pub/sub over Redis: %w", err)
		}
		return e, func() { e.Close() }, nil
	case processes > 1 && brk != nil:
		ctx, cancel := context.WithTimeout(ctx, relayDialTimeout)
		defer cancel()
		e, err := cluster.NewEngine(ctx, brk.dialRelay, cluster.Options{Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("worker: pub/sub relay: %w", err)
		}
		return e, func() { e.Close() }, nil
	}
	return nil, func() {}, nil
}

// processMetrics is the worker's side of the admin address: with an admin
// address configured, it serves the worker's metrics on the connections
// the master sends over the broker socket brk, and returns the registry
// for Options.Metrics and the function that stops serving. Without an
// admin address, or without a broker (an older master), the registry is
// nil.
func processMetrics(cfg config.Config, brk *workerBroker) (prometheus.Registerer, func()) {
	if cfg.AdminAddress == "" || brk == nil {
		return nil, func() {}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ep := admin.NewEndpoint(reg)
	brk.metrics.Store(ep)
	return reg, func() {
		brk.metrics.Store(nil)
		ep.Close()
	}
}

// workerBroker is a worker's side of its broker socket.
type workerBroker struct {
	conn    *net.UnixConn
	relays  chan net.Conn // the master's answers to relay requests
	metrics atomic.Pointer[admin.Endpoint]
	done    chan struct{} // closed when the socket can no longer be read
}

// newWorkerBroker starts reading the broker socket c.
func newWorkerBroker(c *net.UnixConn) *workerBroker {
	b := &workerBroker{conn: c, relays: make(chan net.Conn, 1), done: make(chan struct{})}
	go b.run()
	return b
}

// run takes the connections the master sends: relay answers go to
// dialRelay, metrics connections to the metrics endpoint, if any.
func (b *workerBroker) run() {
	defer close(b.done)
	for {
		op, fd, err := workerproto.RecvFD(b.conn)
		if err != nil {
			return
		}
		if fd < 0 {
			continue
		}
		c, err := workerproto.FDConn(fd, "wsd-stream")
		if err != nil {
			continue // not a socket: nothing to serve on it
		}
		switch op {
		case workerproto.OpRelay:
			select {
			case b.relays <- c:
			default:
				c.Close() // the answer to a request that timed out
			}
		case workerproto.OpMetrics:
			if ep := b.metrics.Load(); ep != nil {
				ep.ServeConn(c)
			} else {
				c.Close() // the scrape fails: this worker keeps no metrics
			}
		default:
			c.Close()
		}
	}
}

// dialRelay asks the master for a connection to its pub/sub hub; it is the
// connect function of the worker's cluster.Engine.
func (b *workerBroker) dialRelay(ctx context.Context) (net.Conn, error) {
	if err := workerproto.SendFD(b.conn, workerproto.OpRelay, -1); err != nil {
		return nil, err
	}
	t := time.NewTimer(relayReplyTimeout)
	defer t.Stop()
	select {
	case c := <-b.relays:
		return c, nil
	case <-t.C:
		return nil, errors.New("worker: broker: no answer to a relay request")
	case <-b.done:
		return nil, fmt.Errorf("worker: broker: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close closes the socket and any answer left unclaimed.
func (b *workerBroker) close() {
	b.conn.Close()
	<-b.done
	select {
	case c := <-b.relays:
		c.Close()
	default:
	}
}
