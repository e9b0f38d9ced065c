package master

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/internal/workerproto"
)

// WorkerCommand is the hidden subcommand of the wsd binary that the master
// re-executes for each worker (package worker's RunProcess).
const WorkerCommand = workerproto.Command

// proc is one worker process.
type proc struct {
	pid      int
	process  *os.Process
	slot     *slot // nil for a draining worker adopted across an upgrade
	cfg      config.Config
	gen      uint64 // the generation of cfg, see Status
	exe      string
	lifeline *os.File      // write end of the control pipe; its close tells the worker the master is gone
	status   *os.File      // read end of the status pipe: "ready", then heartbeats; nil if not watched
	broker   *net.UnixConn // the master's end of the worker's broker socket; nil for an older worker
	started  time.Time
	ready    bool
	stopping bool   // asked to stop, or killed as hung: its slot has moved on
	failure  string // why the master killed it, or why it could not start
	// statusDone is closed once the status pipe's first line has been
	// dealt with, so that a worker's reason for failing (sent before it
	// exits) reaches the run loop before its exit; nil when not read.
	statusDone chan struct{}
	timers     []*time.Timer
}

func (p *proc) slotIndex() int {
	if p.slot == nil {
		return -1
	}
	return p.slot.index
}

// after arms a timer that release and stopTimers cancel.
func (p *proc) after(d time.Duration, f func()) {
	p.timers = append(p.timers, time.AfterFunc(d, f))
}

func (p *proc) stopTimers() {
	for _, t := range p.timers {
		t.Stop()
	}
	p.timers = nil
}

// release frees what the master holds for a reaped worker. Closing the
// status pipe and the broker socket ends the goroutines reading them.
func (p *proc) release() {
	p.stopTimers()
	if p.lifeline != nil {
		p.lifeline.Close()
	}
	if p.status != nil {
		p.status.Close()
	}
	if p.broker != nil {
		p.broker.Close()
	}
	p.lifeline, p.status, p.broker = nil, nil, nil
}

// childEnvSkip lists the variables meant for the master alone: systemd's
// notification socket (NotifyAccess=main would reject a worker anyway) and
// watchdog, and the upgrade hand-off.
var childEnvSkip = []string{"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
	"LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", envUpgrade + "=", envUpgradeChannels + "="}

// envWithout returns env without the variables that start with one of the
// prefixes.
func envWithout(env []string, prefixes ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// spawn starts a worker for slot s running cfg from the binary exe. The
// worker inherits the slot's socket, the read end of a control pipe that
// carries its configuration and then stays open as its lifeline, the write
// end of a status pipe on which it reports that it serves and then beats,
// and its end of a broker socket.
func (m *master) spawn(s *slot, cfg config.Config, gen uint64, exe string) (*proc, error) {
	var mine, theirs []io.Closer // closed on failure; theirs also after the start
	fail := func(err error) (*proc, error) {
		closeClosers(mine)
		closeClosers(theirs)
		return nil, err
	}
	controlR, controlW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("master: control pipe: %w", err))
	}
	mine, theirs = append(mine, controlW), append(theirs, controlR)
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("master: status pipe: %w", err))
	}
	mine, theirs = append(mine, statusR), append(theirs, statusW)
	broker, brokerW, err := brokerPair()
	if err != nil {
		return fail(err)
	}
	mine, theirs = append(mine, broker), append(theirs, brokerW)
	cmd := &exec.Cmd{
		Path:   exe,
		Args:   []string{os.Args[0], WorkerCommand},
		Env:    envWithout(os.Environ(), childEnvSkip...),
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		// listenFD, controlFD, statusFD, brokerFD
		ExtraFiles: []*os.File{s.socket, controlR, statusW, brokerW},
		// A process group of its own keeps the worker out of the terminal's
		// Ctrl-C: SIGINT reaches the master only, which decides.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("master: starting a worker from %s: %w", exe, err))
	}
	closeClosers(theirs)
	p := &proc{
		pid:      cmd.Process.Pid,
		process:  cmd.Process,
		slot:     s,
		cfg:      cfg,
		gen:      gen,
		exe:      exe,
		lifeline: controlW,
		status:   statusR,
		broker:   broker,
		started:  time.Now(),

		statusDone: make(chan struct{}),
	}
	m.procs[p] = struct{}{}
	m.log.Info("worker started", "worker", p.pid, "slot", s.index)

	// The spec is a few KiB, far below a pipe's buffer, so this write does
	// not wait for the worker; the deadline only guards against surprises.
	controlW.SetWriteDeadline(time.Now().Add(5 * time.Second))
	spec := workerproto.Spec{Slot: s.index, Config: cfg, Heartbeat: workerproto.HeartbeatInterval(cfg.WorkerTimeout),
		Broker: true, Processes: processes(cfg)}
	if err := json.NewEncoder(controlW).Encode(spec); err != nil {
		m.log.Error("sending the configuration to a worker", "worker", p.pid, "err", err)
	}
	go m.watchStatus(p, statusR, cfg.WorkerTimeout, false)
	go m.serveBroker(p, broker)
	go m.wait(p)
	p.after(m.opts.StartTimeout, func() { m.send(event{kind: evStartTimeout, p: p}) })
	return p, nil
}

// closeClosers closes each of cs.
func closeClosers(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

// wait reaps the worker. The exit is reported after the status pipe's
// first line, which may say why the worker failed: its write end closed
// with the worker, so that line is at hand.
func (m *master) wait(p *proc) {
	state, err := p.process.Wait()
	if p.statusDone != nil {
		select {
		case <-p.statusDone:
		case <-time.After(time.Second):
		}
	}
	m.send(event{kind: evExit, p: p, state: state, err: err})
}
