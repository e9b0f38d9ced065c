package suite

import (
	"fmt"
	"slices"
	"time"

	"github.com/wsd-server/wsd/bench/report"
	"github.com/wsd-server/wsd/bench/stats"
)

// Document builds the markdown report of the results: the machine, the
// commands that reproduce them (invocation is the suite's own command
// line), the table of checks, every run and, when the idle scenario ran,
// the 1 000 000-connection estimate.
func (r *Results) Document(invocation string, checks []Check) *report.Document {
	m := report.DetectMachine()
	d := &report.Document{
		Generated: r.Finished,
		Machine:   m,
		Test:      r.Config.Test.Name,
		Base:      r.Config.Base.Name,
		Before:    r.Config.beforeName(),
		Runs:      r.Config.Runs,
		Rows:      r.Rows(checks),
	}
	d.Commands = append(d.Commands,
		"# the whole suite ("+r.Finished.Sub(r.Started).Round(time.Second).String()+" here)",
		invocation,
		"",
		"# the servers, started one at a time, each on a free port (PORT)",
		r.Config.Test.CommandLine(),
		r.Config.Base.CommandLine())
	if r.Config.Before != nil {
		d.Commands = append(d.Commands, r.Config.Before.CommandLine())
	}
	d.Commands = append(d.Commands,
		"",
		"# each scenario once, against a server already running on PORT (PID: its process id)")
	for _, sc := range r.Config.Scenarios {
		d.Commands = append(d.Commands, sc.CommandLine("127.0.0.1:PORT"))
	}

	d.Notes = append(d.Notes,
		"Idle memory is the growth of the resident set (Rss in /proc/PID/smaps_rollup, summed over the "+
			"server's process tree) per connection: the slope between 5 000 and 10 000 open connections, "+
			"so fixed start-up memory does not count. Kernel socket memory is not in it; the kernel row is "+
			"the machine-wide slab growth per connection with both ends of each loopback connection counted.",
		"Server CPU per message is the user + system time of the server's processes (/proc/PID/stat) over "+
			"the measured interval divided by the round trips. The stuck-receiver scenario adds one "+
			"connection that never reads (4 KiB receive buffer); its target compares the server with its "+
			"own rate in the same scenario without that connection.")
	if r.ran("broadcast-1000-4KiB") {
		d.Notes = append(d.Notes, "The RSS peak is the high water mark (VmHWM in /proc/PID/status, summed over the server's process "+
			"tree) of a server started for that run, so it covers connecting the receivers and the broadcasts. "+
			"It shows whether a broadcast frame is shared by its recipients' queues: a copy for each would add "+
			"up to 1 000 × 4 KiB for every message still queued.")
	}
	if r.Config.Before != nil {
		d.Notes = append(d.Notes, fmt.Sprintf("%s is an earlier build of %s, run with the same command line "+
			"and shown for comparison; no target depends on it.", d.Before, d.Test))
	}

	if idle := "idle-10000"; r.ran(idle) {
		kernel := append(r.Values(idle, d.Test, KernelPerConn), r.Values(idle, d.Base, KernelPerConn)...)
		d.Estimate = &report.Estimate{
			Conns:         1_000_000,
			TestPerConn:   r.Median(idle, d.Test, IdleSlope),
			BasePerConn:   r.Median(idle, d.Base, IdleSlope),
			TestStartRSS:  r.Median(idle, d.Test, ServerBaseRSS),
			BaseStartRSS:  r.Median(idle, d.Base, ServerBaseRSS),
			KernelPerConn: stats.Median(kernel),
			Processes:     m.CPUs,
		}
	}
	if n := r.failures(); n > 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("%d runs failed; their errors are in the suite's output.", n))
	}
	return d
}

// ran reports whether the suite included the scenario named name.
func (r *Results) ran(name string) bool {
	return slices.ContainsFunc(r.Config.Scenarios, func(s Scenario) bool { return s.Name == name })
}

// beforeName returns the before server's name, empty without one.
func (c Config) beforeName() string {
	if c.Before == nil {
		return ""
	}
	return c.Before.Name
}

func (r *Results) failures() int {
	n := 0
	for _, bySrv := range r.Runs {
		for _, runs := range bySrv {
			for _, run := range runs {
				if run.Err != nil && !isSkipped(run.Err) {
					n++
				}
			}
		}
	}
	return n
}
