package master

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wsd-server/wsd/admin"
)

// adminState is the master's side of the admin address: its own metrics,
// and the view of the workers that the admin server's goroutines read.
// Only the run loop writes it, except view, which is swapped atomically.
type adminState struct {
	reg      *prometheus.Registry
	restarts prometheus.Counter
	hangs    prometheus.Counter
	reloads  *prometheus.CounterVec
	workers  *prometheus.GaugeVec
	slots    prometheus.Gauge

	addr string        // where srv listens; "" when off
	srv  *admin.Server // nil when off
	view atomic.Pointer[adminView]
}

// adminView is a snapshot of the workers for a scrape or a probe.
type adminView struct {
	targets  []admin.Target
	notReady error
	status   *Status // GET /status
}

var errStarting = errors.New("starting")

// startAdmin registers the master's metrics and, when cfg.AdminAddress is
// set, binds and serves the admin address. A bind failure stops Run before
// any worker starts, like one of the main address.
func (m *master) startAdmin() error {
	a := &m.admin
	a.reg = prometheus.NewRegistry()
	a.restarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wsd_worker_restarts_total",
		Help: "Workers started to replace one that died.",
	})
	a.hangs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wsd_worker_hangs_total",
		Help: "Workers killed and replaced for sending no heartbeat within --worker-timeout.",
	})
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsd_reloads_total",
		Help: "Reloads (SIGHUP) and binary upgrades (SIGUSR2) asked for, since this master image started.",
	}, []string{"kind"})
	a.workers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "wsd_workers",
		Help: "Worker processes by state: serving (a slot's ready worker), starting, draining (asked to stop).",
	}, []string{"state"})
	a.slots = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "wsd_worker_slots",
		Help: "Worker slots (listening sockets), the configured number of processes.",
	})
	a.reloads.WithLabelValues("reload")
	a.reloads.WithLabelValues("upgrade")
	a.reg.MustRegister(a.restarts, a.hangs, a.reloads, a.workers, a.slots,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.view.Store(&adminView{notReady: errStarting, status: &Status{PID: os.Getpid(), Workers: []WorkerStatus{}, Draining: []WorkerStatus{}}})
	if m.cfg.AdminAddress == "" {
		return nil
	}
	return m.listenAdmin(m.cfg.AdminAddress)
}

// listenAdmin serves the admin address at addr, replacing the server at the
// previous one.
func (m *master) listenAdmin(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("master: admin address: %w", err)
	}
	a := &m.admin
	srv := admin.New(admin.Options{
		Gatherer: a.reg,
		Workers:  func() []admin.Target { return a.view.Load().targets },
		Ready:    func() error { return a.view.Load().notReady },
		Status:   func() any { return a.view.Load().status },
		Logger:   m.log,
	})
	go func() {
		if err := srv.Serve(ln); err != nil {
			m.log.Error("admin address stopped serving", "addr", addr, "err", err)
		}
	}()
	m.stopAdmin()
	a.srv, a.addr = srv, addr
	m.log.Info("admin address", "addr", ln.Addr().String(), "endpoints", "/metrics /healthz /readyz /status")
	return nil
}

// stopAdmin closes the admin server, if any.
func (m *master) stopAdmin() {
	a := &m.admin
	if a.srv != nil {
		a.srv.Close()
		a.srv, a.addr = nil, ""
	}
}

// publishAdmin refreshes the view and the gauges after the run loop changed
// the state, and follows a reload that moved or turned off the admin
// address (a new address that cannot be bound keeps the old one).
func (m *master) publishAdmin() {
	a := &m.admin
	if a.reg == nil {
		return
	}
	if want := m.cfg.AdminAddress; want != a.addr && !m.stopping {
		if want == "" {
			m.stopAdmin()
		} else if err := m.listenAdmin(want); err != nil {
			m.log.Error("reload: keeping the admin address", "addr", a.addr, "err", err)
		}
	}
	v := &adminView{status: m.status()}
	var serving, starting, draining int
	for p := range m.procs {
		switch {
		case p.stopping:
			draining++
		case p.ready && p.slot != nil && p.slot.cur == p:
			serving++
		default:
			starting++
		}
		// One target per slot, its serving worker: the worker label is
		// the slot, so a draining predecessor would repeat it.
		if p.ready && p.broker != nil && !p.stopping && p.slot != nil && p.slot.cur == p {
			v.targets = append(v.targets, admin.Target{Slot: p.slot.index, PID: p.pid, Dial: metricsDialer(p.broker)})
		}
	}
	switch {
	case m.stopping:
		v.notReady = errors.New("stopping")
	case !m.allReady():
		for _, s := range m.slots {
			if s.cur == nil || !s.cur.ready {
				v.notReady = fmt.Errorf("slot %d has no worker serving", s.index)
				if s.lastFailure != "" {
					v.notReady = fmt.Errorf("%w (last failure: %s)", v.notReady, s.lastFailure)
				}
				break
			}
		}
	}
	a.view.Store(v)
	a.workers.WithLabelValues("serving").Set(float64(serving))
	a.workers.WithLabelValues("starting").Set(float64(starting))
	a.workers.WithLabelValues("draining").Set(float64(draining))
	a.slots.Set(float64(len(m.slots)))
}
