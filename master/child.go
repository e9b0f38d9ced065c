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
	statusFD  = 5 // write end: "ready\n" once the worker accepts connections
)

// workerSpec is what the master sends down the control pipe.
type workerSpec struct {
	Slot   int
	Config config.Config
	// RuntimeDir is the daemon's private directory (mode 0700) for the
	// unix sockets between the master and its workers.
	RuntimeDir string
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

	var once sync.Once
	ready := func() {
		once.Do(func() {
			if _, err := status.Write([]byte("ready\n")); err != nil {
				log.Error("telling the master we are ready", "err", err)
			}
			status.Close()
		})
	}
	metrics, closeMetrics := workerMetrics(cfg, spec.RuntimeDir, log)
	defer closeMetrics()
	engine, closeEngine, err := pubsubEngine(ctx, cfg, spec.RuntimeDir, log)
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
