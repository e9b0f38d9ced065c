package master

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/wsd-server/wsd/config"
)

// proc is one worker process.
type proc struct {
	pid      int
	process  *os.Process
	slot     *slot // nil for a draining worker adopted across an upgrade
	cfg      config.Config
	exe      string
	lifeline *os.File // write end of the control pipe; its close tells the worker the master is gone
	started  time.Time
	ready    bool
	stopping bool   // asked to stop: its exit is no failure
	failure  string // why the master killed it, if it did
	timers   []*time.Timer
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

// release frees what the master holds for a reaped worker.
func (p *proc) release() {
	p.stopTimers()
	if p.lifeline != nil {
		p.lifeline.Close()
		p.lifeline = nil
	}
}

// childEnvSkip lists the variables meant for the master alone: systemd's
// notification socket (NotifyAccess=main would reject a worker anyway) and
// the upgrade hand-off.
var childEnvSkip = []string{"NOTIFY_SOCKET=", "LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", envUpgrade + "="}

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
// carries its configuration and then stays open as its lifeline, and the
// write end of a status pipe on which it reports that it serves.
func (m *master) spawn(s *slot, cfg config.Config, exe string) (*proc, error) {
	controlR, controlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("master: control pipe: %w", err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		controlR.Close()
		controlW.Close()
		return nil, fmt.Errorf("master: status pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:       exe,
		Args:       []string{os.Args[0], WorkerCommand},
		Env:        envWithout(os.Environ(), childEnvSkip...),
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{s.socket, controlR, statusW}, // listenFD, controlFD, statusFD
		// A process group of its own keeps the worker out of the terminal's
		// Ctrl-C: SIGINT reaches the master only, which decides.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = cmd.Start()
	controlR.Close()
	statusW.Close()
	if err != nil {
		controlW.Close()
		statusR.Close()
		return nil, fmt.Errorf("master: starting a worker from %s: %w", exe, err)
	}
	p := &proc{
		pid:      cmd.Process.Pid,
		process:  cmd.Process,
		slot:     s,
		cfg:      cfg,
		exe:      exe,
		lifeline: controlW,
		started:  time.Now(),
	}
	m.procs[p] = struct{}{}
	m.log.Info("worker started", "worker", p.pid, "slot", s.index)

	// The spec is a few KiB, far below a pipe's buffer, so this write does
	// not wait for the worker; the deadline only guards against surprises.
	controlW.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(controlW).Encode(workerSpec{Slot: s.index, Config: cfg, RuntimeDir: m.runtimeDir}); err != nil {
		m.log.Error("sending the configuration to a worker", "worker", p.pid, "err", err)
	}
	go m.watchReady(p, statusR)
	go m.wait(p)
	p.after(m.opts.StartTimeout, func() { m.send(event{kind: evStartTimeout, p: p}) })
	return p, nil
}

// watchReady waits for the worker's "ready" line.
func (m *master) watchReady(p *proc, status *os.File) {
	defer status.Close()
	line, _ := bufio.NewReader(status).ReadString('\n')
	if line == "ready\n" {
		m.send(event{kind: evReady, p: p})
	}
}

// wait reaps the worker.
func (m *master) wait(p *proc) {
	state, err := p.process.Wait()
	m.send(event{kind: evExit, p: p, state: state, err: err})
}
