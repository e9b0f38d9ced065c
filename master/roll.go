package master

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/wsd-server/wsd/config"
)

// roll is a rolling replacement of the workers, slot by slot: SIGHUP's reload
// and the first half of SIGUSR2's binary upgrade.
type roll struct {
	upgrade bool
	status  *ReloadStatus // its record in m.reloads, for GET /status
	cfg     config.Config
	gen     uint64 // cfg's generation
	exe     string
	n       int   // slots once the roll is over
	oldN    int   // slots before it
	i       int   // the slot being replaced
	next    *proc // the new worker of slot i, until it is ready
}

func (r *roll) what() string {
	if r.upgrade {
		return "binary upgrade"
	}
	return "reload"
}

// requestRoll starts a reload or an upgrade, or queues it behind the one in
// progress.
func (m *master) requestRoll(upgrade bool) {
	switch {
	case m.stopping:
		return
	case m.roll != nil && upgrade:
		m.pendingUpgrade = true
		m.log.Info("binary upgrade queued behind the " + m.roll.what() + " in progress")
	case m.roll != nil:
		m.pendingReload = true
		m.log.Info("reload queued behind the " + m.roll.what() + " in progress")
	default:
		m.startRoll(upgrade)
	}
}

func (m *master) nextRoll() {
	switch {
	case m.pendingUpgrade:
		m.pendingUpgrade, m.pendingReload = false, false
		m.startRoll(true)
	case m.pendingReload:
		m.pendingReload = false
		m.startRoll(false)
	}
}

func (m *master) startRoll(upgrade bool) {
	r := &roll{upgrade: upgrade, exe: m.self, oldN: len(m.slots)}
	kind := "reload"
	if upgrade {
		kind = "upgrade"
	}
	r.status = m.reloads.begin(kind)
	m.log.Info(r.what()+" started", "workers", len(m.slots), "id", r.status.ID)
	m.sdNotify(m.notify.reloading(r.what()))

	cfg, err := m.load()
	if err != nil {
		m.rollFailed(r, ReloadInvalidConfig, err)
		return
	}
	if cfg.Address != m.cfg.Address || cfg.Port != m.cfg.Port {
		m.rollFailed(r, ReloadInvalidConfig, fmt.Errorf("address %s port %d → %s port %d: changing where wsd listens needs a restart",
			m.cfg.Address, m.cfg.Port, cfg.Address, cfg.Port))
		return
	}
	usesHub := cfg.Redis == "" && processes(cfg) > 1
	if hub := m.relayCfg; usesHub && !upgrade && (cfg.HistorySize != hub.HistorySize || cfg.HistoryTTL != hub.HistoryTTL) {
		// The hub's history is made once (relay.go); the workers take
		// the new size, with Redis or one process, but the master keeps
		// its own until it re-executes itself.
		m.log.Warn("reload: history-size and history-ttl of the master's pub/sub history take effect at the next binary upgrade or restart",
			"history_size", hub.HistorySize, "new_history_size", cfg.HistorySize,
			"history_ttl", hub.HistoryTTL, "new_history_ttl", cfg.HistoryTTL)
	}
	if upgrade {
		if r.exe, err = os.Executable(); err != nil {
			m.rollFailed(r, ReloadFailed, fmt.Errorf("master: finding the new binary: %w", err))
			return
		}
	}
	m.reloads.issued++
	r.gen, r.status.Generation = m.reloads.issued, m.reloads.issued
	r.cfg, r.n = cfg, processes(cfg)
	if r.n > len(m.slots) {
		files, _, err := openSockets(context.Background(), m.ep, r.n-len(m.slots))
		if err != nil {
			m.rollFailed(r, ReloadFailed, err)
			return
		}
		for _, f := range files {
			m.slots = append(m.slots, &slot{index: len(m.slots), socket: f, cfg: cfg, gen: r.gen, exe: r.exe})
		}
	}
	m.roll = r
	m.rollStep()
}

// load re-reads the configuration, which Options.Load validates.
func (m *master) load() (config.Config, error) {
	if m.opts.Load == nil {
		return m.cfg, nil
	}
	return m.opts.Load()
}

// rollStep starts the new worker of the next slot, or finishes the roll.
func (m *master) rollStep() {
	r := m.roll
	if r.i < r.n {
		s := m.slots[r.i]
		p, err := m.spawn(s, r.cfg, r.gen, r.exe)
		if err != nil {
			m.abortRoll(err)
			return
		}
		r.next = p
		return
	}
	for len(m.slots) > r.n {
		m.removeLastSlot(r.cfg.DrainPeriod)
	}
	if r.upgrade && !m.allReady() {
		// A slot is restarting after a crash; its worker's ready calls
		// rollStep again, so that the exec hands over only ready workers.
		return
	}
	m.roll = nil
	m.cfg = r.cfg
	m.reloads.gen = r.gen
	if err := m.usePidFile(m.cfg.PidFile); err != nil {
		m.log.Error(r.what()+": keeping the pid file", "pid_file", m.pidFile, "err", err)
	}
	if r.upgrade {
		// On success the new binary takes over this very process, records
		// the upgrade as done and reports READY=1 itself.
		err := m.execUpgrade(r.exe)
		m.log.Error("binary upgrade: the new workers serve but the master could not re-execute itself", "binary", r.exe, "err", err)
		m.reloads.end(r.status, ReloadFailed, fmt.Sprintf("the new workers serve, but the master could not re-execute itself: %v", err))
		m.sdNotify(m.notify.ready(m.statusLine() + "; binary upgrade of the master failed"))
		m.nextRoll()
		return
	}
	m.reloads.end(r.status, ReloadOK, "")
	m.log.Info(r.what()+" complete", "workers", len(m.slots), "id", r.status.ID, "generation", r.gen)
	m.sdNotify(m.notify.ready(m.statusLine()))
	m.nextRoll()
}

// promote makes the roll's new worker its slot's worker, stops the old one
// (which drains: its WebSocket clients get 1012 closes spread over the new
// configuration's drain period) and moves on.
func (m *master) promote() {
	r := m.roll
	p := r.next
	s := p.slot
	old := s.cur
	s.cur, s.cfg, s.gen, s.exe = p, r.cfg, r.gen, r.exe
	r.next = nil
	if old != nil {
		m.drainProc(old, r.cfg.DrainPeriod)
	}
	r.i++
	m.rollStep()
}

// abortRoll gives up a roll whose new worker failed. The slots already
// replaced keep their new worker; the others keep the old one.
func (m *master) abortRoll(err error) {
	r := m.roll
	m.roll = nil
	if p := r.next; p != nil {
		if _, alive := m.procs[p]; alive {
			m.stopProc(p)
		}
	}
	// Slots the roll added and never filled go away again.
	for len(m.slots) > max(r.oldN, r.i) && m.slots[len(m.slots)-1].cur == nil {
		m.removeLastSlot(0)
	}
	if p := r.next; p != nil && p.slot.cur == nil && !p.slot.removed {
		m.scheduleRestart(p.slot, 0) // its old worker died meanwhile
	}
	m.rollFailed(r, ReloadFailed, fmt.Errorf("%w (%d of %d workers replaced)", err, r.i, r.n))
}

// rollFailed reports a roll that failed, in the given state
// (ReloadInvalidConfig or ReloadFailed), and moves on to the next one.
func (m *master) rollFailed(r *roll, state string, err error) {
	m.reloads.end(r.status, state, err.Error())
	m.log.Error(r.what()+" failed; the workers keep running", "id", r.status.ID, "err", err)
	m.sdNotify(m.notify.ready(m.statusLine() + "; last " + r.what() + " failed: " + err.Error()))
	m.nextRoll()
}

// removeLastSlot drains the last slot's worker over period and closes its
// socket.
func (m *master) removeLastSlot(period time.Duration) {
	s := m.slots[len(m.slots)-1]
	m.slots = m.slots[:len(m.slots)-1]
	s.removed = true
	if s.cur != nil {
		m.drainProc(s.cur, period)
		s.cur = nil
	}
	if s.socket != nil {
		s.socket.Close()
		s.socket = nil
	}
}
