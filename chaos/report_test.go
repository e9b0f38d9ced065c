//go:build chaos

package chaos

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// MB is the unit of every memory figure and threshold of the suite: 10⁶
// bytes, as in BENCHMARKS.md.
const MB = 1_000_000

// report collects one scenario's figures for the summary table that
// TestMain prints at the end of the run. Each figure is also logged when it
// is set, so `go test -v` shows it in context.
type report struct {
	t *testing.T

	mu      sync.Mutex
	name    string
	result  string
	peak    string   // peak growth of the daemon's RSS during the attack
	settled string   // RSS growth once the attack is over and memory settled
	fds     string   // descriptor count: baseline → after
	probe   string   // what the good clients did
	notes   []string // the scenario's own figures
}

var (
	reportsMu sync.Mutex
	reports   []*report
)

// newReport starts the report of the running scenario. Its result is set
// when the test ends: PASS, FAIL or SKIP.
func newReport(t *testing.T) *report {
	r := &report{t: t, name: t.Name(), result: "RUNNING"}
	reportsMu.Lock()
	reports = append(reports, r)
	reportsMu.Unlock()
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case t.Skipped():
			r.result = "SKIP"
		case t.Failed():
			r.result = "FAIL"
		default:
			r.result = "PASS"
		}
	})
	return r
}

// notef logs a figure and keeps it for the summary.
func (r *report) notef(format string, args ...any) {
	r.t.Helper()
	s := fmt.Sprintf(format, args...)
	r.t.Log(s)
	r.mu.Lock()
	r.notes = append(r.notes, s)
	r.mu.Unlock()
}

func (r *report) set(field *string, format string, args ...any) {
	r.t.Helper()
	s := fmt.Sprintf(format, args...)
	r.mu.Lock()
	*field = s
	r.mu.Unlock()
}

// setPeak records the peak RSS growth over the baseline.
func (r *report) setPeak(baseline, peak int64) {
	r.t.Helper()
	r.t.Logf("memory: baseline %s, peak %s, peak growth %s", megabytes(baseline), megabytes(peak), megabytes(peak-baseline))
	r.set(&r.peak, "%s", megabytes(peak-baseline))
}

// setSettled records the RSS growth once memory has settled.
func (r *report) setSettled(baseline, after int64, took string) {
	r.t.Helper()
	r.t.Logf("memory after the attack: %s (%s over the baseline) after %s", megabytes(after), megabytes(after-baseline), took)
	r.set(&r.settled, "%s", megabytes(after-baseline))
}

// setFDs records the descriptor counts.
func (r *report) setFDs(baseline, after int) {
	r.t.Helper()
	r.t.Logf("descriptors of the daemon: baseline %d, after %d", baseline, after)
	r.set(&r.fds, "%d → %d", baseline, after)
}

// setProbe records what the probe did.
func (r *report) setProbe(res probeResult) {
	r.t.Helper()
	r.t.Logf("probe: %s", res)
	r.set(&r.probe, "%s", res.short())
}

// megabytes formats bytes as MB with one decimal.
func megabytes(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/MB) }

// printSummary writes every scenario's figures as a markdown table.
func printSummary(w io.Writer) {
	reportsMu.Lock()
	defer reportsMu.Unlock()
	if len(reports) == 0 {
		return
	}
	fmt.Fprintln(w, "\nchaos summary:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | result | peak RSS growth | RSS growth after settling | descriptors | probe | figures |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---|")
	for _, r := range reports {
		r.mu.Lock()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.result, dash(r.peak), dash(r.settled),
			dash(r.fds), dash(r.probe), dash(strings.ReplaceAll(strings.Join(r.notes, "; "), "|", "/")))
		r.mu.Unlock()
	}
	fmt.Fprintln(w)
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
