package load

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/wsd-server/wsd/bench/procstat"
)

// IdleOptions describes an idle run: connections are opened in steps and
// left silent, and the server's resident memory is read at each step.
type IdleOptions struct {
	// URL is a WebSocket endpoint of the server, e.g. ws://127.0.0.1:8080/.
	URL string
	// Steps are the total connection counts to measure at, ascending,
	// e.g. 5000 and 10000.
	Steps []int
	// ServerPID is the server whose process tree is measured; required.
	ServerPID int
	// Settle is the most time to wait for the server's memory to stop
	// changing at each step; 0 means 5 s.
	Settle time.Duration
	// Counter, if not nil, is incremented per opened connection.
	Counter *atomic.Int64
	// Dial tunes the connections.
	Dial DialOptions
}

// IdlePoint is one measurement of an idle run.
type IdlePoint struct {
	// Conns is the number of open connections.
	Conns int
	// RSS is the resident memory of the server's process tree in bytes.
	RSS int64
	// Slab is the kernel's slab memory in bytes, machine-wide.
	Slab int64
}

// IdleResult is what an idle run measured.
type IdleResult struct {
	// Base is the measurement before any connection was opened.
	Base IdlePoint
	// Points has one measurement per step.
	Points []IdlePoint
}

// PerConn returns the resident memory growth per connection from the base to
// point i, in bytes.
func (r IdleResult) PerConn(i int) float64 {
	p := r.Points[i]
	if p.Conns == 0 {
		return 0
	}
	return float64(p.RSS-r.Base.RSS) / float64(p.Conns)
}

// Slope returns the growth per connection between the last two points (or
// from the base with a single point), in bytes: the marginal cost of one
// more idle connection, free of the server's fixed start-up memory.
func (r IdleResult) Slope() float64 {
	n := len(r.Points)
	if n == 0 {
		return 0
	}
	prev := r.Base
	if n > 1 {
		prev = r.Points[n-2]
	}
	last := r.Points[n-1]
	if last.Conns == prev.Conns {
		return 0
	}
	return float64(last.RSS-prev.RSS) / float64(last.Conns-prev.Conns)
}

// KernelPerConn returns the kernel slab growth per connection from the base
// to the last point, in bytes. Both ends of a loopback connection are
// counted, and other activity on the machine adds noise.
func (r IdleResult) KernelPerConn() float64 {
	n := len(r.Points)
	if n == 0 || r.Points[n-1].Conns == 0 {
		return 0
	}
	return float64(r.Points[n-1].Slab-r.Base.Slab) / float64(r.Points[n-1].Conns)
}

// Idle runs an idle-connection benchmark. The connections stay open until
// Idle returns.
func Idle(ctx context.Context, o IdleOptions) (IdleResult, error) {
	if o.ServerPID <= 0 {
		return IdleResult{}, errors.New("load: idle needs the server's pid")
	}
	if len(o.Steps) == 0 || !slices.IsSorted(o.Steps) || o.Steps[0] <= 0 {
		return IdleResult{}, fmt.Errorf("load: idle steps %v are not ascending positive counts", o.Steps)
	}
	settle := o.Settle
	if settle <= 0 {
		settle = 5 * time.Second
	}
	var res IdleResult
	var err error
	if res.Base, err = settledPoint(ctx, o.ServerPID, 0, settle); err != nil {
		return res, err
	}
	var conns []*Conn
	defer func() { CloseAll(conns) }()
	for _, step := range o.Steps {
		more, err := DialMany(ctx, o.URL, step-len(conns), o.Dial, o.Counter)
		if err != nil {
			return res, err
		}
		conns = append(conns, more...)
		p, err := settledPoint(ctx, o.ServerPID, len(conns), settle)
		if err != nil {
			return res, err
		}
		res.Points = append(res.Points, p)
	}
	return res, nil
}

// settledPoint waits until the server's memory holds still (two readings in
// a row within 0.5 % or 64 KiB, at least half a second after the last
// connection), at most settle, and returns the last reading.
func settledPoint(ctx context.Context, pid, conns int, settle time.Duration) (IdlePoint, error) {
	const every = 250 * time.Millisecond
	deadline := time.Now().Add(settle)
	var prev int64 = -1
	stable := 0
	for {
		select {
		case <-ctx.Done():
			return IdlePoint{}, ctx.Err()
		case <-time.After(every):
		}
		s, err := procstat.Measure(pid)
		if err != nil {
			return IdlePoint{}, fmt.Errorf("load: server memory: %w", err)
		}
		d := s.RSS - prev
		if prev >= 0 && max(d, -d) <= max(s.RSS/200, 64<<10) {
			stable++
		} else {
			stable = 0
		}
		prev = s.RSS
		if stable >= 2 || time.Now().After(deadline) {
			slab, err := procstat.KernelSlab()
			if err != nil {
				return IdlePoint{}, err
			}
			return IdlePoint{Conns: conns, RSS: s.RSS, Slab: slab}, nil
		}
	}
}
