package master

import "time"

// crashLog remembers when a slot's worker failed, to space out restarts and to
// spot a crash loop.
type crashLog struct {
	times []time.Time
}

// add records a failure at now and returns how many failures fall within
// window, this one included.
func (c *crashLog) add(now time.Time, window time.Duration) int {
	kept := c.times[:0]
	for _, t := range c.times {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	c.times = append(kept, now)
	return len(c.times)
}

// restartDelay is how long to wait before the restart that follows the n-th
// failure in the window: none after the first, so that a lone crash is
// repaired at once, then base doubling up to max.
func restartDelay(n int, base, max time.Duration) time.Duration {
	if n <= 1 {
		return 0
	}
	d := base
	for i := 2; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
