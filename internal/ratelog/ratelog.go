package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the interval of a Limiter made with interval 0: one
// line a second per kind, the promise the README makes for repeated errors.
const DefaultInterval = time.Second

// Limiter passes at most one log line per interval for each kind. The zero
// value is not usable; make one with New. It is safe for concurrent use.
type Limiter struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	kinds map[string]*kind
}

type kind struct {
	last       time.Time
	suppressed uint64
}

// New returns a Limiter that writes to log (slog.Default() when nil), one
// line per kind per interval (DefaultInterval when 0).
func New(log *slog.Logger, interval time.Duration) *Limiter {
	if log == nil {
		log = slog.Default()
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Limiter{log: log, interval: interval, now: time.Now, kinds: make(map[string]*kind)}
}

// Allow reports whether a line of this kind may be written now and, when it
// may, how many lines of the kind were suppressed since the last one.
func (l *Limiter) Allow(key string) (ok bool, suppressed uint64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[key]
	if k == nil {
		l.kinds[key] = &kind{last: now}
		return true, 0
	}
	if now.Sub(k.last) < l.interval {
		k.suppressed++
		return false, 0
	}
	suppressed, k.suppressed, k.last = k.suppressed, 0, now
	return true, suppressed
}

// Log writes msg with args at level, under the kind key, unless a line of
// that kind was written less than an interval ago. A line that follows
// suppressed ones carries their number as the attribute "suppressed".
func (l *Limiter) Log(level slog.Level, key, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	ok, n := l.Allow(key)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, slog.Uint64("suppressed", n))
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// Error is Log at slog.LevelError.
func (l *Limiter) Error(key, msg string, args ...any) { l.Log(slog.LevelError, key, msg, args...) }

// Warn is Log at slog.LevelWarn.
func (l *Limiter) Warn(key, msg string, args ...any) { l.Log(slog.LevelWarn, key, msg, args...) }
