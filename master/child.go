package master

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
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/worker"
)

// WorkerCommand is the hidden subcommand of the wsd binary that the master
// re-executes for each worker; its handler calls RunWorker.
const WorkerCommand = "worker"

// The file descriptors a worker inherits, in exec.Cmd.ExtraFiles order.
const (
	listenFD  = 3 // the slot's listening socket
	controlFD = 4 // read end: the workerSpec as JSON, then EOF when the master dies
	statusFD  = 5 // write end: "ready\n" once the worker accepts connections, then heartbeats
	brokerFD  = 6 // the worker's end of its broker socket (see broker.go), if workerSpec.Broker
)

// workerSpec is what the master sends down the control pipe. A worker
// ignores fields it does not know and takes the zero value of those a
// master does not send, so that either side may be the older binary during
// an upgrade.
type workerSpec struct {
	Slot   int
	Config config.Config
	// Heartbeat is how often the worker writes a heartbeat on its status
	// pipe after "ready"; 0 means never, and the worker closes the pipe.
	Heartbeat time.Duration
	// Broker says that brokerFD is the worker's broker socket, through
	// which it reaches the pub/sub hub and serves its metrics. A master
	// too old to send it passes no such descriptor.
	Broker bool
}

// errMasterGone is the cause of a worker's stop when its control pipe ends,
// which happens only when every copy of the write end is closed: the master
// died without stopping its workers (kill -9, a crash, the OOM killer).
var errMasterGone = errors.New("master: the master process is gone")

// RunWorker is the body of a worker process, the hidden `wsd worker`
// subcommand. It reads its configuration and listening socket from the file
// descriptors the master set up (see the package documentation), serves
// until SIGTERM or SIGINT or until the master dies, then stops gracefully.
// It returns nil after a clean stop. It is not meant to be run by hand.
func RunWorker(ctx context.Context) error {
	if !isFD(listenFD) || !isFD(controlFD) || !isFD(statusFD) {
		return errors.New("master: `wsd " + WorkerCommand + "` runs only under `wsd serve`, which hands it its sockets")
	}
	lnFile := os.NewFile(listenFD, "wsd-listener")
	control := os.NewFile(controlFD, "wsd-control")
	status := os.NewFile(statusFD, "wsd-status")
	defer control.Close()

	var spec workerSpec
	if err := json.NewDecoder(control).Decode(&spec); err != nil {
		return fmt.Errorf("master: worker: reading the configuration from the master: %w", err)
	}
	ln, err := net.FileListener(lnFile)
	lnFile.Close() // ln holds its own descriptor
	if err != nil {
		return fmt.Errorf("master: worker: inherited listener: %w", err)
	}
	cfg := spec.Config
	log := cfg.Logger(os.Stderr, slog.Int("worker", os.Getpid()), slog.Int("slot", spec.Slot))
	if cfg.Threads > 0 {
		runtime.GOMAXPROCS(cfg.Threads)
	}

	// SIGHUP and SIGUSR2 are the master's business; a stray one sent to every
	// wsd process (pkill -HUP wsd) must not kill the workers.
	signal.Ignore(unix.SIGHUP, unix.SIGUSR2)
	ctx, stop := signal.NotifyContext(ctx, unix.SIGTERM, unix.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		io.Copy(io.Discard, control)
		cancel(errMasterGone)
	}()

	stopBeats := make(chan struct{})
	defer close(stopBeats)
	var once sync.Once
	ready := func() {
		once.Do(func() {
			if _, err := status.Write([]byte("ready\n")); err != nil {
				log.Error("telling the master we are ready", "err", err)
			}
			if spec.Heartbeat > 0 {
				go sendHeartbeats(status, spec.Heartbeat, stopBeats)
			} else {
				status.Close()
			}
		})
	}

	var brk *workerBroker
	if spec.Broker {
		c, err := fdConn(brokerFD, "wsd-broker")
		if err != nil {
			return fmt.Errorf("master: worker: %w", err)
		}
		brk = newWorkerBroker(c)
		defer brk.close()
	} else {
		log.Warn("started by an older master: no pub/sub across workers and no metrics until the next reload")
	}
	metrics, closeMetrics := workerMetrics(cfg, brk)
	defer closeMetrics()
	engine, closeEngine, err := pubsubEngine(ctx, cfg, brk, log)
	if err != nil {
		return err
	}
	defer closeEngine()
	err = worker.Run(ctx, cfg, ln, worker.Options{Logger: log, Ready: ready, Metrics: metrics, Engine: engine})
	if errors.Is(context.Cause(ctx), errMasterGone) {
		log.Warn("master gone: stopped serving")
	}
	return err
}

// isFD reports whether fd is an open descriptor.
func isFD(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}
