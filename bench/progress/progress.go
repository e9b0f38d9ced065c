package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IsTerminal reports whether f is a terminal (a character device).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Line is a progress display for one measured run. Start it with Start and
// end it with Stop.
type Line struct {
	w        io.Writer
	tty      bool
	label    string
	unit     string
	counter  *atomic.Int64
	interval time.Duration
	start    time.Time

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start begins showing counter's growth per second, labelled label and
// measured in unit ("msg/s"). On a terminal (tty true) the line is rewritten
// four times a second; otherwise a line is printed every interval (0 means
// 2 s), so that logs stay short.
func Start(w io.Writer, tty bool, label, unit string, counter *atomic.Int64, interval time.Duration) *Line {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if tty {
		interval = 250 * time.Millisecond
	}
	l := &Line{
		w: w, tty: tty, label: label, unit: unit, counter: counter, interval: interval,
		start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go l.run()
	return l
}

func (l *Line) run() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	last, lastAt := l.counter.Load(), time.Now()
	for {
		select {
		case <-l.stop:
			if l.tty {
				fmt.Fprint(l.w, "\r\033[K")
			}
			return
		case now := <-t.C:
			n := l.counter.Load()
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			last, lastAt = n, now
			text := Format(l.label, now.Sub(l.start), rate, l.unit, n)
			if l.tty {
				fmt.Fprint(l.w, "\r\033[K"+text)
			} else {
				fmt.Fprintln(l.w, text)
			}
		}
	}
}

// Stop ends the display, clearing the line on a terminal. It is safe to call
// more than once.
func (l *Line) Stop() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// Format renders one progress line.
func Format(label string, elapsed time.Duration, rate float64, unit string, total int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %5.1fs  %s %s  (%s total)", label, elapsed.Seconds(), Human(rate), unit, Human(float64(total)))
	return b.String()
}

// Human renders n with a k/M/G suffix and three significant digits.
func Human(n float64) string {
	abs := max(n, -n)
	switch {
	case abs >= 1e9:
		return trim(n/1e9) + " G"
	case abs >= 1e6:
		return trim(n/1e6) + " M"
	case abs >= 1e4:
		return trim(n/1e3) + " k"
	case abs >= 100 || abs == 0:
		return fmt.Sprintf("%.0f", n)
	default:
		return trim(n)
	}
}

func trim(v float64) string {
	abs := max(v, -v)
	switch {
	case abs >= 100:
		return fmt.Sprintf("%.0f", v)
	case abs >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
