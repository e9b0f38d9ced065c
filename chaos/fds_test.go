//go:build chaos

package chaos

import (
	"testing"
	"time"
)

// TestDescriptorExhaustion: a daemon of 2 workers under RLIMIT_NOFILE 512,
// and an attacker that opens 1300 connections at once (more than both
// workers can hold), half of them WebSocket upgrades and half silent TCP,
// holds them for 2 s and lets go, three times. The probe, connected before
// the attack, must stay connected and served; the workers must survive
// (running out of descriptors is no reason to exit); and afterwards 30 new
// connections out of 30 must work.
func TestDescriptorExhaustion(t *testing.T) {
	const limit, rounds, perRound, hold = 512, 3, 1300, 2 * time.Second
	s := begin(t, daemonOpts{processes: 2, nofile: limit}, probeOpts{})
	for round := 1; round <= rounds; round++ {
		// The descriptors of every worker, sampled until the release (read
		// once sampled is closed).
		peak := map[int]int{}
		stop, sampled := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sampled)
			for range 1000 {
				for _, p := range s.d.workers() {
					peak[p] = max(peak[p], fdCount(p))
				}
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		st := holdConns(s.d.addr, perRound)
		t.Cleanup(st.release)
		opened := time.Since(start)
		time.Sleep(hold) // the attack: hold them
		close(stop)
		<-sampled
		s.r.notef("round %d: %d connections held (%d upgraded) after %s, %d failed to connect; upgrade errors: %s; peak descriptors per worker %v (limit %d)",
			round, len(st.held), st.upgraded, opened.Round(time.Millisecond), st.failed, st.errs.String(), peak, limit)
		st.release()
	}
	// Once the attacker has gone, the daemon serves new connections again:
	// first one, then 30 of 30.
	var n int
	var errs *errKinds
	took, ok := eventually(15*time.Second, func() bool {
		n, errs = tryConns(s.d.addr, 1, 2*time.Second)
		return n == 1
	})
	if !ok {
		t.Errorf("15 s after the attack, a new connection still fails: %s", errs)
	} else {
		n, errs = tryConns(s.d.addr, 30, 5*time.Second)
		s.r.notef("after the attack: a new connection worked after %s, then %d of 30 (errors: %s)", took.Round(time.Millisecond), n, errs)
		if n != 30 {
			t.Errorf("after the attack, %d of 30 new connections worked: %s", n, errs)
		}
	}
	s.endAttack(0)
	s.finish(true)
}
