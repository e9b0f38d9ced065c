package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/internal/ratelog"
	"github.com/wsd-server/wsd/internal/workerproto"
	"github.com/wsd-server/wsd/pubsub/cluster"
)

// Options configure Run. Only Config is required.
type Options struct {
	// Config is the configuration to start with, already loaded and
	// validated: Run does not validate it again.
	Config config.Config
	// Load re-reads the configuration for SIGHUP and SIGUSR2, and returns
	// it validated (config.Config.Validate) or an error, which makes the
	// reload fail as an invalid configuration. Nil keeps Config.
	Load func() (config.Config, error)
	// Logger receives the master's log lines; nil builds one from Config's
	// log_format and log_level, writing to stderr.
	Logger *slog.Logger

	// CrashLimit and CrashWindow bound a crash loop: when the workers of one
	// slot fail CrashLimit times within CrashWindow, the master stops every
	// worker and Run returns an error wrapping ErrCrashLoop. Zero means 5
	// failures within 30 seconds.
	CrashLimit  int
	CrashWindow time.Duration
	// RestartDelay and MaxRestartDelay shape the backoff between the restarts
	// of a failing slot: the first failure in the window is repaired at once,
	// the next after RestartDelay, then twice as long each time up to
	// MaxRestartDelay. Zero means 100ms and 5s.
	RestartDelay    time.Duration
	MaxRestartDelay time.Duration
	// StartTimeout bounds how long a new worker may take to report that it
	// serves; one that takes longer is killed and counts as a failure. Zero
	// means 30s.
	StartTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.CrashLimit <= 0 {
		o.CrashLimit = 5
	}
	if o.CrashWindow <= 0 {
		o.CrashWindow = 30 * time.Second
	}
	if o.RestartDelay <= 0 {
		o.RestartDelay = 100 * time.Millisecond
	}
	if o.MaxRestartDelay <= 0 {
		o.MaxRestartDelay = 5 * time.Second
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = o.Config.Logger(os.Stderr)
	}
}

// ErrCrashLoop is wrapped by Run's error when a worker slot keeps failing.
var ErrCrashLoop = errors.New("master: worker crash loop")

// ErrStoppedAtOnce is wrapped by Run's error when a second stop signal (or
// SIGQUIT) made the master kill its workers instead of letting them drain.
var ErrStoppedAtOnce = errors.New("master: stopped at once")

// killGrace is how long past its shutdown timeout a stopping worker may take
// before the master kills it.
const killGrace = time.Second

// Run binds the configured address, starts the workers and supervises them
// until a stop: SIGTERM or SIGINT (graceful), a second one of those or SIGQUIT
// (at once), ctx's cancellation (graceful) or a crash loop. SIGHUP reloads the
// configuration and replaces the workers one by one; SIGUSR2 also replaces
// the binary. It returns nil after a graceful stop, and an error if the
// address cannot be bound, no worker can be started, a slot crash-loops
// (ErrCrashLoop) or the stop was forced (ErrStoppedAtOnce).
//
// Run handles those signals itself for as long as it runs; the caller should
// not install handlers for them.
func Run(ctx context.Context, opts Options) error {
	opts.setDefaults()
	log := opts.Logger.With("master", os.Getpid())
	m := &master{
		opts:   opts,
		log:    log,
		limit:  ratelog.New(log, 0),
		cfg:    opts.Config,
		procs:  make(map[*proc]struct{}),
		events: make(chan event, 64),
		done:   make(chan struct{}),
		self:   selfExecutable(),
	}
	defer close(m.done)
	// Signals are caught before any worker exists, so that none can kill
	// the master and orphan them.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGHUP, unix.SIGUSR2)
	if os.Getpid() == 1 {
		// As PID 1 (a container's entrypoint) the master inherits every
		// orphan of its namespace and must reap them.
		signal.Notify(sigs, unix.SIGCHLD)
	}
	defer signal.Stop(sigs)
	if err := m.startAdmin(); err != nil {
		return err
	}
	defer m.stopAdmin()
	// The relay exists before any worker, whose broker may ask for it at
	// once; nothing else writes m.relay.
	m.relay = startRelay(m.log, m.cfg)
	m.relayCfg = m.cfg
	defer m.relay.Close()
	n, err := newNotifier()
	if err != nil {
		return err
	}
	m.notify = n
	if m.watchdog, err = watchdogInterval(); err != nil {
		m.log.Warn("systemd watchdog off", "err", err)
	}

	if state, ok, err := inheritedState(); err != nil {
		return err
	} else if ok {
		if err := m.adopt(state); err != nil {
			return err
		}
	} else if err := m.start(ctx); err != nil {
		return err
	}
	if err := m.usePidFile(m.cfg.PidFile); err != nil {
		m.fail = err
		m.stop("cannot write the pid file")
	}
	defer func() { m.usePidFile("") }()
	return m.run(ctx, sigs)
}

// processes resolves the configured worker count: 0 means one per CPU
// available to the master.
func processes(cfg config.Config) int {
	if cfg.Processes <= 0 {
		return config.AvailableCPUs()
	}
	return cfg.Processes
}

// usePidFile makes path the pid file: it writes the master's pid there and
// removes the previous pid file, if it was another. An empty path only
// removes the previous one, as Run does when it returns. A binary upgrade
// keeps the file, as it keeps the pid.
func (m *master) usePidFile(path string) error {
	if path != "" {
		if err := writePidFile(path); err != nil {
			return err
		}
	}
	if m.pidFile != "" && m.pidFile != path {
		removePidFile(m.pidFile)
	}
	m.pidFile = path
	return nil
}

// selfExecutable is the binary workers are started from: the master's own
// image through /proc/self/exe, which stays valid when the file on disk is
// replaced, so that workers always match their master. Only SIGUSR2 goes
// through the path on disk.
func selfExecutable() string {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe"
	}
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// master is the state of Run. Only the goroutine in run touches it; the
// goroutines watching processes and timers talk to it through events.
type master struct {
	opts   Options
	log    *slog.Logger
	limit  *ratelog.Limiter // for the lines that can repeat
	cfg    config.Config    // the configuration new slots get
	ep     endpoint
	self   string
	notify notifier
	// watchdog is how often to send WATCHDOG=1 (half systemd's
	// WatchdogSec), or 0.
	watchdog time.Duration
	relay    *cluster.Hub  // the pub/sub relay between the workers
	relayCfg config.Config // the configuration relay was made with

	slots  []*slot
	procs  map[*proc]struct{} // every worker process not yet reaped
	events chan event
	done   chan struct{} // closed when Run returns, to release senders

	roll           *roll // the reload or upgrade in progress
	pendingReload  bool
	pendingUpgrade bool

	serving  bool // READY=1 was sent
	stopping bool
	stopSigs int // stop signals received
	fail     error

	admin   adminState  // metrics and health, see admin.go
	reloads reloadState // generations and the last reload, see status.go
	pidFile string      // the pid file written, if any
}

// slot is one listening socket and the worker serving it.
type slot struct {
	index   int
	socket  *os.File
	cur     *proc         // the worker serving the socket, or nil
	cfg     config.Config // what cur runs, and what a restart gets
	gen     uint64        // cfg's generation
	exe     string
	crashes crashLog
	// lastFailure says why the slot's last worker failed, for /readyz
	// until its next worker is ready.
	lastFailure string
	respawn     bool // a restart is scheduled
	removed     bool
}

type eventKind int

const (
	evReady        eventKind = iota // a worker reported that it serves
	evExit                          // a worker was reaped
	evRespawn                       // a slot's restart delay is over
	evStartTimeout                  // a worker has not become ready in time
	evKillTimeout                   // a stopping worker has not exited in time
	evHang                          // a ready worker's heartbeats stopped
	evFailed                        // a worker said why it cannot start (err)
)

type event struct {
	kind  eventKind
	p     *proc
	s     *slot
	state *os.ProcessState
	err   error
}

// send hands ev to the run loop, or drops it once Run has returned.
func (m *master) send(ev event) {
	select {
	case m.events <- ev:
	case <-m.done:
	}
}

// start opens the sockets and starts one worker per slot.
func (m *master) start(ctx context.Context) error {
	n := processes(m.cfg)
	ep := newEndpoint(m.cfg)
	if err := checkFree(ctx, ep); err != nil {
		return err
	}
	files, ep, err := openSockets(ctx, ep, n)
	if err != nil {
		return err
	}
	m.ep = ep
	m.log.Info("listening", "addr", ep.addr, "processes", n)
	m.reloads.gen, m.reloads.issued = 1, 1
	for i, f := range files {
		m.slots = append(m.slots, &slot{index: i, socket: f, cfg: m.cfg, gen: m.reloads.gen, exe: m.self})
	}
	for _, s := range m.slots {
		p, err := m.spawn(s, s.cfg, s.gen, s.exe)
		if err != nil {
			// Stop the workers already started, then report.
			m.fail = err
			m.stop("cannot start workers")
			return nil
		}
		s.cur = p
	}
	return nil
}

// run is the event loop. It returns once a stop has been asked for and every
// worker has been reaped.
func (m *master) run(ctx context.Context, sigs <-chan os.Signal) error {
	var reap <-chan time.Time
	if os.Getpid() == 1 {
		// SIGCHLD can be missed while a worker's zombie hides an orphan's.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		reap = t.C
	}
	var watchdog <-chan time.Time
	if m.watchdog > 0 && m.notify.enabled() {
		// The loop itself pets the watchdog, so that systemd restarts a
		// master whose loop is stuck, not just one that died.
		t := time.NewTicker(m.watchdog)
		defer t.Stop()
		watchdog = t.C
		m.log.Info("systemd watchdog on", "every", m.watchdog)
	}

	ctxDone := ctx.Done()
	for !m.stopping || len(m.procs) > 0 {
		m.publishAdmin()
		select {
		case <-ctxDone:
			ctxDone = nil
			m.stop("context cancelled")
		case sig := <-sigs:
			m.signal(sig.(unix.Signal))
		case ev := <-m.events:
			m.handle(ev)
		case <-reap:
			m.reapOrphans()
		case <-watchdog:
			if err := m.notify.watchdog(); err != nil {
				m.limit.Warn("watchdog", "sd_notify WATCHDOG=1", "err", err)
			}
		}
	}
	m.closeSockets()
	if m.fail != nil {
		return m.fail
	}
	m.log.Info("stopped")
	return nil
}

func (m *master) signal(sig unix.Signal) {
	switch sig {
	case unix.SIGINT, unix.SIGTERM:
		m.stopSigs++
		if m.stopSigs > 1 {
			m.kill(sig)
			return
		}
		m.stop("signal " + unix.SignalName(sig))
	case unix.SIGQUIT:
		m.kill(sig)
	case unix.SIGHUP:
		m.admin.reloads.WithLabelValues("reload").Inc()
		m.requestRoll(false)
	case unix.SIGUSR2:
		m.admin.reloads.WithLabelValues("upgrade").Inc()
		m.requestRoll(true)
	case unix.SIGCHLD:
		m.reapOrphans()
	}
}

func (m *master) handle(ev event) {
	p := ev.p
	switch ev.kind {
	case evReady:
		m.ready(p)
	case evExit:
		m.exited(p, ev.state, ev.err)
	case evRespawn:
		ev.s.respawn = false
		m.restart(ev.s)
	case evStartTimeout:
		if _, alive := m.procs[p]; alive && !p.ready && !p.stopping {
			p.failure = fmt.Sprintf("not ready within %s", m.opts.StartTimeout)
			m.log.Error("worker did not start in time; killing it", "worker", p.pid, "slot", p.slotIndex(), "timeout", m.opts.StartTimeout)
			p.process.Signal(unix.SIGKILL)
		}
	case evKillTimeout:
		if _, alive := m.procs[p]; alive {
			m.log.Warn("worker did not stop in time; killing it", "worker", p.pid, "slot", p.slotIndex())
			p.process.Signal(unix.SIGKILL)
		}
	case evHang:
		if _, alive := m.procs[p]; alive && p.ready && !p.stopping && !m.stopping {
			m.hung(p)
		}
	case evFailed:
		if p.failure == "" {
			p.failure = ev.err.Error()
		}
	}
}

// ready handles a worker's report that it accepts connections.
func (m *master) ready(p *proc) {
	if _, alive := m.procs[p]; !alive || p.stopping {
		return
	}
	p.ready = true
	p.stopTimers()
	if p.slot != nil {
		p.slot.lastFailure = ""
	}
	m.log.Info("worker ready", "worker", p.pid, "slot", p.slotIndex(), "after", time.Since(p.started).Round(time.Millisecond))
	if r := m.roll; r != nil {
		if r.next == p {
			m.promote()
			return
		}
		if r.i >= r.n {
			m.rollStep() // an upgrade waiting for every slot to be ready
			return
		}
	}
	if !m.serving && m.allReady() {
		m.serving = true
		m.log.Info("serving", "addr", m.ep.addr, "workers", len(m.slots))
		m.sdNotify(m.notify.ready(m.statusLine()))
	}
}

func (m *master) allReady() bool {
	for _, s := range m.slots {
		if s.cur == nil || !s.cur.ready {
			return false
		}
	}
	return true
}

func (m *master) statusLine() string {
	return fmt.Sprintf("serving on %s with %d workers", m.ep.addr, len(m.slots))
}

// exited handles the reaping of a worker.
func (m *master) exited(p *proc, state *os.ProcessState, err error) {
	delete(m.procs, p)
	p.release()
	how := describeExit(state, err)
	if (m.stopping || p.stopping) && p.failure == "" {
		m.log.Info("worker stopped", "worker", p.pid, "slot", p.slotIndex(), "status", how)
	} else {
		if p.failure != "" {
			how = p.failure
		}
		m.log.Error("worker died", "worker", p.pid, "slot", p.slotIndex(), "status", how)
	}
	if m.stopping {
		return
	}
	if m.roll != nil && m.roll.next == p {
		m.abortRoll(fmt.Errorf("the new worker for slot %d failed before serving: %s", p.slotIndex(), how))
		return
	}
	s := p.slot
	if s == nil || s.cur != p || p.stopping {
		return // a worker that was asked to stop
	}
	s.cur = nil
	m.slotFailed(s, fmt.Sprintf("worker %d: %s", p.pid, how))
}

// slotFailed counts a failure of s's worker and schedules its restart, or
// stops everything when the slot crash-loops.
func (m *master) slotFailed(s *slot, why string) {
	s.lastFailure = why
	n := s.crashes.add(time.Now(), m.opts.CrashWindow)
	if n >= m.opts.CrashLimit {
		m.fail = fmt.Errorf("%w: the worker of slot %d failed %d times within %s (last: %s); stopping",
			ErrCrashLoop, s.index, n, m.opts.CrashWindow, why)
		m.log.Error("crash loop: stopping every worker", "slot", s.index, "failures", n, "window", m.opts.CrashWindow)
		m.stop("crash loop")
		return
	}
	m.scheduleRestart(s, restartDelay(n, m.opts.RestartDelay, m.opts.MaxRestartDelay))
}

func (m *master) scheduleRestart(s *slot, d time.Duration) {
	if s.respawn {
		return
	}
	m.log.Info("restarting worker", "slot", s.index, "in", d)
	if d == 0 {
		m.restart(s)
		return
	}
	s.respawn = true
	time.AfterFunc(d, func() { m.send(event{kind: evRespawn, s: s}) })
}

// restart starts a worker on a slot that has none.
func (m *master) restart(s *slot) {
	if m.stopping || s.removed || s.cur != nil {
		return
	}
	if m.roll != nil && m.roll.next != nil && m.roll.next.slot == s {
		return // the reload's new worker is taking the slot over
	}
	p, err := m.spawn(s, s.cfg, s.gen, s.exe)
	if err != nil {
		m.log.Error("cannot start worker", "slot", s.index, "err", err)
		m.slotFailed(s, err.Error())
		return
	}
	s.cur = p
	m.admin.restarts.Inc()
}

// stop begins a graceful stop: every worker gets SIGTERM and drains its
// connections within its shutdown timeout.
func (m *master) stop(reason string) {
	if m.stopping {
		return
	}
	m.stopping = true
	m.log.Info("stopping", "reason", reason, "workers", len(m.procs))
	m.sdNotify(m.notify.stopping("stopping: " + reason))
	// Closing the master's copies lets each socket close with its worker's
	// last copy, so clients are refused once nobody will serve them rather
	// than waiting in a backlog that nobody accepts from.
	m.closeSockets()
	for p := range m.procs {
		m.stopProc(p)
	}
}

// kill stops at once: every worker gets SIGKILL.
func (m *master) kill(sig unix.Signal) {
	m.log.Warn("stopping at once", "signal", unix.SignalName(sig), "workers", len(m.procs))
	if !m.stopping {
		m.stopping = true
		m.sdNotify(m.notify.stopping("stopping at once"))
		m.closeSockets()
	}
	if m.fail == nil {
		m.fail = fmt.Errorf("%w on %s: workers were killed without draining", ErrStoppedAtOnce, unix.SignalName(sig))
	}
	for p := range m.procs {
		p.stopping = true
		p.process.Signal(unix.SIGKILL)
	}
}

// stopProc asks one worker to stop gracefully (SIGTERM: its WebSockets get
// a close 1001 at once), and arms the kill that follows if it overstays its
// shutdown timeout.
func (m *master) stopProc(p *proc) {
	if p.stopping {
		return
	}
	p.stopping = true
	p.stopTimers()
	m.signalProc(p, unix.SIGTERM)
	p.after(p.cfg.ShutdownTimeout+killGrace, func() { m.send(event{kind: evKillTimeout, p: p}) })
}

// drainProc stops a worker that a reload or an upgrade replaced: a drain
// message on its control pipe makes it stop accepting and close its
// WebSockets with 1012, spread over period (see package worker). A worker
// too old to know the message ignores it, so SIGTERM follows once period
// is over; one that drains ignores that. The kill follows if it overstays
// period and its shutdown timeout.
func (m *master) drainProc(p *proc, period time.Duration) {
	if p.stopping {
		return
	}
	if p.lifeline == nil {
		m.stopProc(p)
		return
	}
	p.lifeline.SetWriteDeadline(time.Now().Add(time.Second))
	if err := workerproto.WriteControl(p.lifeline, workerproto.Control{Drain: true, DrainPeriod: period}); err != nil {
		m.log.Warn("asking a worker to drain; stopping it instead", "worker", p.pid, "err", err)
		m.stopProc(p)
		return
	}
	p.stopping = true
	p.stopTimers()
	m.log.Info("draining worker", "worker", p.pid, "slot", p.slotIndex(), "period", period)
	p.after(period+killGrace, func() { m.signalProc(p, unix.SIGTERM) })
	p.after(period+p.cfg.ShutdownTimeout+killGrace, func() { m.send(event{kind: evKillTimeout, p: p}) })
}

// signalProc sends sig to p, which may have exited already.
func (m *master) signalProc(p *proc, sig unix.Signal) {
	if err := p.process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.log.Error("signalling worker", "worker", p.pid, "signal", unix.SignalName(sig), "err", err)
	}
}

func (m *master) closeSockets() {
	for _, s := range m.slots {
		if s.socket != nil {
			s.socket.Close()
			s.socket = nil
		}
	}
}

// sdNotify logs a failed notification; systemd may be gone, which must not
// stop the service.
func (m *master) sdNotify(err error) {
	if err != nil {
		m.log.Warn("sd_notify", "err", err)
	}
}

func describeExit(state *os.ProcessState, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case state == nil:
		return "unknown"
	default:
		return state.String()
	}
}
