package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is what GET /status on the admin address answers, as JSON: the
// master's pid, the configuration generation its workers should run, the
// last reload or binary upgrade and how it ended, and every worker. `wsd
// reload` reads it before and after its SIGHUP to learn the outcome.
//
// A generation numbers a configuration: 1 is the one the master started
// with, and each reload or upgrade that loads a valid configuration takes
// the next number, whether or not it then succeeds. The numbers go on
// across a binary upgrade, like the pid.
type Status struct {
	PID int `json:"pid"`
	// Generation is the configuration new workers get: the one the last
	// successful reload applied.
	Generation uint64 `json:"generation"`
	// Reloads counts the reloads and upgrades started; the next one gets
	// the ID Reloads+1.
	Reloads uint64 `json:"reloads"`
	// Reload is the last reload or upgrade, running or finished; nil before
	// the first.
	Reload *ReloadStatus `json:"reload,omitempty"`
	// Workers are the slots' workers, by slot; Draining the workers that
	// are stopping. A reload's new worker shows once it serves its slot.
	Workers  []WorkerStatus `json:"workers"`
	Draining []WorkerStatus `json:"draining"`
}

// The states of a reload.
const (
	ReloadRunning       = "running"
	ReloadOK            = "ok"
	ReloadInvalidConfig = "invalid_config" // the configuration did not load or validate
	ReloadFailed        = "failed"         // a new worker failed, or the new binary could not be found
)

// ReloadStatus is one reload (SIGHUP) or binary upgrade (SIGUSR2).
type ReloadStatus struct {
	ID   uint64 `json:"id"`
	Kind string `json:"kind"` // "reload" or "upgrade"
	// State is ReloadRunning, ReloadOK, ReloadInvalidConfig or
	// ReloadFailed; Message says why for the last two.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// Generation is the configuration it applies; 0 when it did not load.
	Generation uint64     `json:"generation,omitempty"`
	Started    time.Time  `json:"started"`
	Finished   *time.Time `json:"finished,omitempty"`
}

// WorkerStatus is one worker process.
type WorkerStatus struct {
	Slot       int    `json:"slot"` // -1 for a draining worker adopted across an upgrade
	PID        int    `json:"pid"`
	Generation uint64 `json:"generation"`
	Ready      bool   `json:"ready"`
}

// reloadState is the master's record of reloads, which it keeps across a
// binary upgrade.
type reloadState struct {
	gen    uint64 // the generation of m.cfg
	issued uint64 // the last generation given out
	count  uint64 // reloads and upgrades started
	last   *ReloadStatus
}

// begin records the start of a reload or upgrade and returns its record.
func (rs *reloadState) begin(kind string) *ReloadStatus {
	rs.count++
	rs.last = &ReloadStatus{ID: rs.count, Kind: kind, State: ReloadRunning, Started: time.Now()}
	return rs.last
}

// end records how r ended.
func (rs *reloadState) end(r *ReloadStatus, state, message string) {
	now := time.Now()
	r.State, r.Message, r.Finished = state, message, &now
}

// status builds the Status of the master's current state; only the run
// loop calls it.
func (m *master) status() *Status {
	st := &Status{PID: os.Getpid(), Generation: m.reloads.gen, Reloads: m.reloads.count,
		Workers: []WorkerStatus{}, Draining: []WorkerStatus{}}
	if r := m.reloads.last; r != nil {
		c := *r
		st.Reload = &c
	}
	for p := range m.procs {
		w := WorkerStatus{Slot: p.slotIndex(), PID: p.pid, Generation: p.gen, Ready: p.ready}
		switch {
		case !p.stopping && p.slot != nil && p.slot.cur == p:
			st.Workers = append(st.Workers, w)
		case p.stopping || p.slot == nil:
			st.Draining = append(st.Draining, w)
		}
		// Otherwise it is a reload's new worker, not yet serving.
	}
	slices.SortFunc(st.Workers, func(a, b WorkerStatus) int { return a.Slot - b.Slot })
	slices.SortFunc(st.Draining, func(a, b WorkerStatus) int { return a.PID - b.PID })
	return st
}

// writePidFile writes the master's pid to path atomically: to a temporary
// file in the same directory, then renamed over path, so that a reader
// never sees a partial pid.
func writePidFile(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("master: pid file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	err = errors.Join(err, f.Chmod(0o644), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("master: pid file: %w", err)
	}
	return nil
}

// removePidFile removes path if it still holds this process's pid: another
// master may have taken it over since.
func removePidFile(path string) {
	if pid, err := ReadPidFile(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

// ReadPidFile reads the pid a master wrote to path.
func ReadPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not hold a pid: %q", path, b)
	}
	return pid, nil
}
