//go:build chaos

package chaos

import (
	"syscall"
	"testing"
	"time"
)

// TestStoppedWorker: SIGSTOP of one of 2 workers. The kernel keeps handing
// it new connections (SO_REUSEPORT), which it never accepts; the master
// must notice the hung worker (within 10 s) and replace it on the same
// slot, so that within 20 s of the SIGSTOP 30 new connections out of 30
// work again. The probe, kept off the stopped worker, must not notice.
func TestStoppedWorker(t *testing.T) {
	r := newReport(t)
	d := startDaemon(t, daemonOpts{processes: 2})
	victim := d.initial[0]
	s := &scene{t: t, d: d, r: r, p: startProbe(t, d, probeOpts{avoid: victim})}
	s.baseline()

	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP worker %d: %v", victim, err)
	}
	stopped := time.Now()
	// Whatever happens, the process this test stopped must not stay stopped.
	cont := func() {
		if runs(victim, wsdBin) {
			if st, _, _ := procStat(victim); st == "T" {
				syscall.Kill(victim, syscall.SIGCONT)
			}
		}
	}
	t.Cleanup(cont)

	batches := 0
	var n int
	var errs *errKinds
	took, ok := eventually(20*time.Second, func() bool {
		n, errs = tryConns(d.addr, 30, 3*time.Second)
		batches++
		t.Logf("%s after SIGSTOP: %d of 30 new connections worked (errors: %s)", time.Since(stopped).Round(time.Millisecond), n, errs)
		return n == 30
	})
	st, _, _ := procStat(victim)
	r.notef("SIGSTOP of worker %d: 30 of 30 new connections %s after %s (%d batches); the stopped worker is now %q; workers %v",
		victim, map[bool]string{true: "worked", false: "did not work"}[ok], took.Round(time.Millisecond), batches, stateName(st), d.workers())
	if !ok {
		t.Errorf("20 s after SIGSTOP of worker %d, only %d of 30 new connections work: %s", victim, n, errs)
	}
	if alive(victim) {
		t.Errorf("the stopped worker %d still exists (state %s): the master did not replace it", victim, st)
		cont()
	}
	s.endAttack(0)
	s.finish(false)
}

// stateName spells out a /proc state letter.
func stateName(st string) string {
	switch st {
	case "":
		return "gone"
	case "T", "t":
		return "stopped"
	case "Z":
		return "zombie"
	case "R":
		return "running"
	case "S", "D":
		return "sleeping"
	}
	return st
}
