//go:build chaos

package chaos

import (
	"testing"
	"time"
)

// fdMargin is how many more descriptors than at its baseline the daemon
// may hold once an attack is over.
const fdMargin = 8

// scene is the frame of a scenario: its daemon and probe, its report, and
// the baselines the end checks compare against.
type scene struct {
	t       *testing.T
	d       *daemon
	p       *probe
	r       *report
	baseRSS int64
	baseFDs int
	mw      *memWatch
	peak    int64 // RSS growth at its peak, once endAttack has run
}

// begin starts a scenario: the daemon, the probe, the baselines (taken
// with the probe running), then the memory sampling of the attack.
func begin(t *testing.T, do daemonOpts, po probeOpts) *scene {
	t.Helper()
	s := &scene{t: t, r: newReport(t)}
	s.d = startDaemon(t, do)
	s.p = startProbe(t, s.d, po)
	s.baseline()
	return s
}

// baseline measures the daemon at rest and starts sampling its memory.
func (s *scene) baseline() {
	s.t.Helper()
	s.baseRSS = s.d.stableRSS()
	s.baseFDs = s.d.fds()
	s.t.Logf("baseline: RSS %s, %d descriptors", megabytes(s.baseRSS), s.baseFDs)
	s.mw = s.d.watchMemory()
}

// endAttack stops the memory sampling, records the peak growth and, with
// limit > 0, fails the test if it was over limit.
func (s *scene) endAttack(limit int64) int64 {
	s.t.Helper()
	peak := s.mw.stop()
	s.mw = nil
	s.peak = peak - s.baseRSS
	s.r.setPeak(s.baseRSS, peak)
	if limit > 0 && s.peak > limit {
		s.t.Errorf("the daemon's memory grew by %s during the attack, over the %s allowed", megabytes(s.peak), megabytes(limit))
	}
	return s.peak
}

// finish runs the checks every scenario ends with: memory back within
// settleMargin of the baseline, descriptors back within fdMargin, the probe
// unharmed, the daemon alive (with the same workers, if sameWorkers), then
// a graceful stop that leaves nothing behind.
func (s *scene) finish(sameWorkers bool) {
	s.t.Helper()
	if s.mw != nil {
		s.endAttack(0)
	}
	last, took, ok := s.d.settleRSS(s.baseRSS+settleMargin, settleTimeout)
	s.r.setSettled(s.baseRSS, last, took.Round(100*time.Millisecond).String())
	if !ok {
		s.t.Errorf("the daemon's memory did not come back to within %s of its baseline %s in %s: still %s (%s over)",
			megabytes(settleMargin), megabytes(s.baseRSS), settleTimeout, megabytes(last), megabytes(last-s.baseRSS))
	}
	var fds int
	if _, ok := eventually(5*time.Second, func() bool {
		fds = s.d.fds()
		return fds <= s.baseFDs+fdMargin
	}); !ok {
		s.t.Errorf("the daemon holds %d descriptors well after the attack, %d more than its baseline %d", fds, fds-s.baseFDs, s.baseFDs)
	}
	s.r.setFDs(s.baseFDs, fds)
	s.p.check(s.r)
	s.d.checkAlive(sameWorkers)
	s.d.stop()
}
