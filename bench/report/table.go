package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/wsd-server/wsd/bench/progress"
)

// Row is one line of the results table: a measured quantity for the server
// under test and the baseline, their ratio and the target it is held to.
type Row struct {
	// Scenario names what was run ("echo 64 B × 100 conns").
	Scenario string
	// Metric names what was measured, with its unit ("msg/s").
	Metric string
	// Test and Base are the medians for the server under test and the
	// baseline; NaN when missing.
	Test, Base float64
	// Ratio is Test/Base (NaN when not meaningful).
	Ratio float64
	// Target is the goal in words ("≥ 1.0× raw"), empty when none.
	Target string
	// Met is "yes", "no" or "" (no target, or no data).
	Met string
	// Note explains anything unusual (a failed run, an incomplete one).
	Note string
	// TestRuns and BaseRuns are the individual runs' values.
	TestRuns, BaseRuns []float64
}

// FormatValue renders a measured value for the table.
func FormatValue(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	if math.IsInf(v, 0) {
		return "∞"
	}
	return strings.TrimSuffix(progress.Human(v), " ")
}

// FormatRatio renders a ratio as "1.23×".
func FormatRatio(r float64) string {
	switch {
	case math.IsNaN(r):
		return "—"
	case math.IsInf(r, 1):
		return "∞"
	case r >= 100:
		return fmt.Sprintf("%.0f×", r)
	default:
		return fmt.Sprintf("%.2f×", r)
	}
}

// WriteTable writes rows as an aligned plain-text table with the two
// servers' names as column headers.
func WriteTable(w io.Writer, test, base string, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\tmetric\t%s\t%s\tratio\ttarget\tmet?\n", test, base)
	for _, r := range rows {
		met := r.Met
		if met == "" {
			met = "—"
		}
		if r.Note != "" {
			met += " (" + r.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Metric,
			FormatValue(r.Test), FormatValue(r.Base), FormatRatio(r.Ratio), orDash(r.Target), met)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
