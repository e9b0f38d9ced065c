//go:build chaos

package chaos

import (
	"sync"
	"sync/atomic"
	"time"
)

// The daemon's memory is the resident memory (VmRSS) of the master and its
// workers together: what the machine pays, whatever Go's runtime thinks of
// its heap.

const (
	// settleMargin is how far above its baseline the daemon's memory may
	// stay once an attack is over.
	settleMargin = 64 * MB
	// settleTimeout is how long the daemon has to get there.
	settleTimeout = 20 * time.Second
)

// memWatch samples the daemon's memory until stopped and keeps the peak.
type memWatch struct {
	once    sync.Once
	stopc   chan struct{}
	done    chan struct{}
	peak    atomic.Int64
	samples atomic.Int64
}

// watchMemory samples d.rss() every 100 ms until stop, or the end of the
// test.
func (d *daemon) watchMemory() *memWatch {
	w := &memWatch{stopc: make(chan struct{}), done: make(chan struct{})}
	d.t.Cleanup(func() { w.stop() })
	w.sample(d)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stopc:
				w.sample(d)
				return
			case <-tick.C:
				w.sample(d)
			}
		}
	}()
	return w
}

func (w *memWatch) sample(d *daemon) {
	v := d.rss()
	w.samples.Add(1)
	for {
		p := w.peak.Load()
		if v <= p || w.peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// stop ends the sampling and returns the peak.
func (w *memWatch) stop() int64 {
	w.once.Do(func() { close(w.stopc) })
	<-w.done
	return w.peak.Load()
}

// stableRSS waits until the daemon's memory stops moving (three readings
// 250 ms apart within 1 MB of each other, for at most 5 s) and returns the
// last reading: the baseline of a scenario.
func (d *daemon) stableRSS() int64 {
	var r [3]int64
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		r[i%3] = d.rss()
		if i >= 2 {
			lo, hi := min(r[0], r[1], r[2]), max(r[0], r[1], r[2])
			if hi-lo <= MB || time.Now().After(deadline) {
				return r[i%3]
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// settleRSS polls the daemon's memory until it is at most limit, for at
// most timeout, and returns the last reading and the time it took.
func (d *daemon) settleRSS(limit int64, timeout time.Duration) (last int64, took time.Duration, ok bool) {
	took, ok = eventually(timeout, func() bool {
		last = d.rss()
		return last <= limit
	})
	return last, took, ok
}
