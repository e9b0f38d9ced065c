package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/wsd-server/wsd/bench/progress"
	"github.com/wsd-server/wsd/bench/report"
	"github.com/wsd-server/wsd/bench/stats"
)

// Config is a suite run.
type Config struct {
	// Test is the server under test; Base is the baseline it is compared to.
	Test, Base Server
	// Before, if not nil, is a third server, usually an earlier build of
	// Test, run in the same rotation and shown beside the other two. The
	// targets stay relative to Base.
	Before *Server
	// Scenarios are run in order.
	Scenarios []Scenario
	// Runs is the number of runs per scenario and server; 0 means 3.
	Runs int
	// Out receives progress and a summary line per run; nil discards them.
	Out io.Writer
	// TTY makes progress a single line rewritten in place.
	TTY bool
}

// Run is one scenario run against one server.
type Run struct {
	Metrics Metrics
	Err     error
}

// Results are every run of a suite.
type Results struct {
	Config   Config
	Started  time.Time
	Finished time.Time
	// Runs[scenario name][server name] lists the runs in order.
	Runs map[string]map[string][]Run
}

// Servers returns the servers of the suite: Test, Base and, if set, Before.
func (c Config) Servers() []Server {
	servers := []Server{c.Test, c.Base}
	if c.Before != nil {
		servers = append(servers, *c.Before)
	}
	return servers
}

// Order returns the order in which servers take their turn in run (counted
// from 1): as given in odd runs, reversed in even ones. Two servers thus go
// ABBA (test, base, base, test, ...), three go test, base, before, before,
// base, test, ...: every pair alternates which of the two goes first, and
// test and base always run next to each other, so that a drift of the
// machine's speed affects all alike.
func Order(servers []Server, run int) []Server {
	order := slices.Clone(servers)
	if run%2 == 0 {
		slices.Reverse(order)
	}
	return order
}

// Execute runs every scenario Runs times against each server, the servers
// taking turns in the order of Order. Each run gets a freshly started
// server. A failed run is recorded and the suite goes on; Execute itself
// fails only when ctx ends.
func Execute(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	servers := cfg.Servers()
	width := 0
	for _, srv := range servers {
		width = max(width, len(srv.Name))
	}
	res := &Results{Config: cfg, Started: time.Now(), Runs: make(map[string]map[string][]Run)}
	for si, sc := range cfg.Scenarios {
		res.Runs[sc.Name] = make(map[string][]Run)
		if err := sc.Available(); err != nil {
			for _, srv := range servers {
				res.Runs[sc.Name][srv.Name] = []Run{{Err: err}}
			}
			fmt.Fprintf(out, "[%d/%d] %s: %v\n", si+1, len(cfg.Scenarios), sc.Title, err)
			continue
		}
		for run := 1; run <= cfg.Runs; run++ {
			for _, srv := range Order(servers, run) {
				if ctx.Err() != nil {
					res.Finished = time.Now()
					return res, ctx.Err()
				}
				label := fmt.Sprintf("[%d/%d] %-*s %s  run %d/%d", si+1, len(cfg.Scenarios), width, srv.Name, sc.Title, run, cfg.Runs)
				r := runOnce(ctx, sc, srv, label, out, cfg.TTY)
				res.Runs[sc.Name][srv.Name] = append(res.Runs[sc.Name][srv.Name], r)
				fmt.Fprintln(out, summary(label, sc, r))
			}
		}
	}
	res.Finished = time.Now()
	return res, nil
}

func runOnce(ctx context.Context, sc Scenario, srv Server, label string, out io.Writer, tty bool) Run {
	p, err := Start(ctx, srv)
	if err != nil {
		return Run{Err: err}
	}
	var counter atomic.Int64
	stopProgress := func() {}
	if sc.Mode == ModeWrk {
		// wrk reports only at its end: there is no rate to show meanwhile.
		fmt.Fprintln(out, label+": running wrk")
	} else {
		stopProgress = progress.Start(out, tty, label, sc.Unit(), &counter, 0).Stop
	}
	m, err := sc.Run(ctx, p.Addr, p.PID(), &counter)
	stopProgress()
	if alive := p.Alive(); alive != nil && err == nil {
		err = alive
	}
	if stopErr := p.Stop(); err != nil {
		if stopErr != nil {
			err = fmt.Errorf("%w (%v)", err, stopErr)
		}
		return Run{Err: err}
	}
	return Run{Metrics: m}
}

func summary(label string, sc Scenario, r Run) string {
	if r.Err != nil {
		if errors.Is(r.Err, ErrSkipped) {
			return label + ": " + r.Err.Error()
		}
		return label + ": FAILED: " + r.Err.Error()
	}
	m := r.Metrics
	switch sc.Mode {
	case ModeEcho:
		return fmt.Sprintf("%s: %s msg/s, %s MB/s, p99 %.2f ms, server %.1f µs/msg", label,
			progress.Human(m[MsgPerSec]), progress.Human(m[MBPerSec]), m[P99], m[CPUPerUnit])
	case ModeBroadcast:
		line := fmt.Sprintf("%s: %s deliveries/s, p99 %.2f ms, complete %v, server %.2f µs/delivery", label,
			progress.Human(m[DelivPerSec]), m[P99], m[Complete] == 1, m[CPUPerUnit])
		if peak, ok := m[PeakRSS]; ok {
			line += fmt.Sprintf(", RSS peak %.0f MB", peak/1e6)
		}
		return line
	case ModeIdle:
		return fmt.Sprintf("%s: %.0f B/conn slope, %.0f B/conn at last step, kernel %.0f B/conn", label,
			m[IdleSlope], m[IdleLast], m[KernelPerConn])
	case ModeWrk:
		return fmt.Sprintf("%s: %s req/s", label, progress.Human(m[ReqPerSec]))
	default:
		return fmt.Sprintf("%s: %s req/s, p99 %.2f ms", label, progress.Human(m[ReqPerSec]), m[P99])
	}
}

// Values returns the metric's value in every successful run of scenario
// against server.
func (r *Results) Values(scenario, server, metric string) []float64 {
	var vs []float64
	for _, run := range r.Runs[scenario][server] {
		if v, ok := run.Metrics[metric]; run.Err == nil && ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// Median returns the median of Values, NaN without any.
func (r *Results) Median(scenario, server, metric string) float64 {
	return stats.Median(r.Values(scenario, server, metric))
}

// Failures returns the errors of scenario's runs against server.
func (r *Results) Failures(scenario, server string) []error {
	var errs []error
	for _, run := range r.Runs[scenario][server] {
		if run.Err != nil {
			errs = append(errs, run.Err)
		}
	}
	return errs
}

// Check is a row of the results table: a metric of a scenario, how it is
// shown, and the target it is held to.
type Check struct {
	Scenario string
	Metric   string
	// Label names the metric with its unit, as shown.
	Label string
	// Scale multiplies the raw value for display (bytes → KB: 1e-3).
	Scale float64
	// Target is the goal in words; empty for information only.
	Target string
	// Met decides the goal from the medians (raw, unscaled) of the server
	// under test and the baseline, and the results for checks that need
	// more (nil: no goal).
	Met func(test, base float64, r *Results) bool
	// Absolute marks a goal decided without the baseline's value.
	Absolute bool
	// Reference names another scenario Met needs; without it the goal is
	// left undecided.
	Reference string
}

// AtLeast is met when test ≥ x × base.
func AtLeast(x float64) func(test, base float64, _ *Results) bool {
	return func(test, base float64, _ *Results) bool { return test >= x*base }
}

// AtMost is met when test ≤ x × base.
func AtMost(x float64) func(test, base float64, _ *Results) bool {
	return func(test, base float64, _ *Results) bool { return test <= x*base }
}

// Below is met when test ≤ limit, whatever the baseline.
func Below(limit float64) func(test, base float64, _ *Results) bool {
	return func(test, _ float64, _ *Results) bool { return test <= limit }
}

// StandardChecks are the rows of the standard set, with the targets of the
// engine v2 issue. Relative targets compare the server under test with the
// raw baseline; the idle memory target is absolute.
func StandardChecks() []Check {
	const kb, mb = 1e-3, 1e-6
	return []Check{
		{Scenario: "idle-10000", Metric: IdleSlope, Label: "RSS growth per idle conn, 5 000→10 000 (KB)", Scale: kb,
			Target: "≤ 0.5 KB", Met: Below(500), Absolute: true},
		{Scenario: "idle-10000", Metric: IdleLast, Label: "RSS per idle conn at 10 000 (KB)", Scale: kb},
		{Scenario: "idle-10000", Metric: KernelPerConn, Label: "kernel slab per conn, both ends (KB)", Scale: kb},
		{Scenario: "echo-64B-100", Metric: MsgPerSec, Label: "msg/s", Target: "≥ 1.25× raw", Met: AtLeast(1.25)},
		{Scenario: "echo-64B-100", Metric: CPUPerUnit, Label: "server CPU µs/msg", Target: "≤ 0.65× raw", Met: AtMost(0.65)},
		{Scenario: "echo-64B-100", Metric: P99, Label: "latency p99 (ms)", Target: "≤ 1.0× raw", Met: AtMost(1)},
		{Scenario: "echo-64B-1000", Metric: MsgPerSec, Label: "msg/s", Target: "≥ 1.25× raw", Met: AtLeast(1.25)},
		{Scenario: "echo-64B-1000", Metric: CPUPerUnit, Label: "server CPU µs/msg", Target: "≤ 0.65× raw", Met: AtMost(0.65)},
		{Scenario: "echo-64B-1000", Metric: P99, Label: "latency p99 (ms)", Target: "≤ 1.0× raw", Met: AtMost(1)},
		{Scenario: "echo-64KiB-10", Metric: MBPerSec, Label: "MB/s", Target: "≥ 5× raw", Met: AtLeast(5)},
		{Scenario: "broadcast-1000", Metric: DelivPerSec, Label: "deliveries/s", Target: "≥ 1.15× raw", Met: AtLeast(1.15)},
		{Scenario: "broadcast-10000", Metric: DelivPerSec, Label: "deliveries/s", Target: "≥ 1.9× raw", Met: AtLeast(1.9)},
		{Scenario: "broadcast-1000-4KiB", Metric: DelivPerSec, Label: "deliveries/s (reference)"},
		{Scenario: "broadcast-1000-4KiB", Metric: PeakRSS, Label: "server RSS peak (MB)", Scale: mb},
		{Scenario: "broadcast-100-4KiB", Metric: DelivPerSec, Label: "deliveries/s (reference)"},
		{Scenario: "broadcast-100-4KiB-stuck", Metric: DelivPerSec, Label: "deliveries/s to the 100 readers",
			Target: "≥ 0.7× own rate without the stuck one", Met: notSlowedByStuck("broadcast-100-4KiB", 0.7), Absolute: true,
			Reference: "broadcast-100-4KiB"},
		{Scenario: "http-100", Metric: ReqPerSec, Label: "req/s", Target: "≥ 1.0× raw", Met: AtLeast(1)},
		{Scenario: "wrk-100", Metric: ReqPerSec, Label: "req/s (wrk)", Target: "≥ 1.0× raw", Met: AtLeast(1)},
	}
}

// notSlowedByStuck compares the server under test with itself: its rate
// with a stuck receiver must stay within x of its rate in the reference
// scenario, and its reading receivers must get every message.
func notSlowedByStuck(reference string, x float64) func(test, base float64, r *Results) bool {
	return func(test, _ float64, r *Results) bool {
		name := r.Config.Test.Name
		ref := r.Median(reference, name, DelivPerSec)
		complete := r.Median("broadcast-100-4KiB-stuck", name, Complete)
		return !math.IsNaN(ref) && test >= x*ref && complete == 1
	}
}

// Rows turns the results into table rows, skipping checks whose scenario
// was not run.
func (r *Results) Rows(checks []Check) []report.Row {
	var rows []report.Row
	titles := make(map[string]string)
	for _, sc := range r.Config.Scenarios {
		titles[sc.Name] = sc.Title
	}
	test, base := r.Config.Test.Name, r.Config.Base.Name
	for _, c := range checks {
		title, ok := titles[c.Scenario]
		if !ok {
			continue
		}
		tv, bv := r.Values(c.Scenario, test, c.Metric), r.Values(c.Scenario, base, c.Metric)
		tm, bm := stats.Median(tv), stats.Median(bv)
		scale := c.Scale
		if scale == 0 {
			scale = 1
		}
		row := report.Row{
			Scenario: title, Metric: c.Label, Target: c.Target,
			Test: tm * scale, Base: bm * scale, Ratio: ratio(tm, bm),
			TestRuns: scaled(tv, scale), BaseRuns: scaled(bv, scale),
		}
		if r.Config.Before != nil {
			fv := r.Values(c.Scenario, r.Config.Before.Name, c.Metric)
			fm := stats.Median(fv)
			row.Before, row.BeforeRatio, row.BeforeRuns = fm*scale, ratio(tm, fm), scaled(fv, scale)
		}
		_, haveRef := titles[c.Reference]
		if c.Met != nil && !math.IsNaN(tm) && (c.Absolute || !math.IsNaN(bm)) && (c.Reference == "" || haveRef) {
			row.Met = "no"
			if c.Met(tm, bm, r) {
				row.Met = "yes"
			}
		}
		row.Note = r.note(c.Scenario)
		if c.Reference != "" && !haveRef {
			row.Note = joinNotes(append([]string{"target needs " + c.Reference}, nonEmpty(row.Note)...))
		}
		rows = append(rows, row)
	}
	return rows
}

// ratio returns test ÷ base: +Inf when only base is zero, NaN when either
// is missing or both are zero.
func ratio(test, base float64) float64 {
	if base == 0 && test > 0 {
		return math.Inf(1)
	}
	return test / base
}

// note summarises failed, skipped and incomplete runs of a scenario.
func (r *Results) note(scenario string) string {
	var notes []string
	for _, server := range r.Config.Servers() {
		srv := server.Name
		var failed, skipped int
		for _, run := range r.Runs[scenario][srv] {
			switch {
			case errors.Is(run.Err, ErrSkipped):
				skipped++
			case run.Err != nil:
				failed++
			}
		}
		if skipped > 0 {
			return firstLine(r.Runs[scenario][srv][0].Err.Error())
		}
		if failed > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d of %d runs failed", srv, failed, len(r.Runs[scenario][srv])))
		}
		if inc := r.Values(scenario, srv, Complete); len(inc) > 0 && stats.Median(inc) < 1 {
			notes = append(notes, srv+": receivers missed messages")
		}
	}
	return joinNotes(notes)
}

func scaled(vs []float64, s float64) []float64 {
	out := make([]float64, len(vs))
	for i, v := range vs {
		out[i] = v * s
	}
	return out
}
