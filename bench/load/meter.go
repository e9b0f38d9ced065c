package load

import (
	"sync"
	"time"

	"github.com/wsd-server/wsd/bench/procstat"
)

// cpuMeter reads a server's CPU time around the measured interval. A zero
// pid measures nothing.
type cpuMeter struct {
	pid    int
	before procstat.Sample
	err    error
}

func startCPU(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid}
	if pid > 0 {
		m.before, m.err = procstat.Measure(pid)
	}
	return m
}

// stop returns the CPU time used since startCPU.
func (m *cpuMeter) stop() (time.Duration, error) {
	if m.pid <= 0 || m.err != nil {
		return 0, m.err
	}
	after, err := procstat.Measure(m.pid)
	if err != nil {
		return 0, err
	}
	return after.CPU - m.before.CPU, nil
}

// perSecond divides n by d in seconds, returning 0 for an empty interval.
func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// firstError keeps the first error reported by any of several goroutines.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
