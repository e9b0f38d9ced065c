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
// under test, the baseline and, optionally, an earlier build of the server
// under test ("before"), the ratios and the target it is held to.
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
	// Before is the median for the earlier build, and BeforeRatio is
	// Test/Before; both are shown only when the document names a before
	// server.
	Before, BeforeRatio float64
	// Target is the goal in words ("≥ 1.0× raw"), empty when none.
	Target string
	// Met is "yes", "no" or "" (no target, or no data).
	Met string
	// Note explains anything unusual (a failed run, an incomplete one).
	Note string
	// TestRuns, BaseRuns and BeforeRuns are the individual runs' values.
	TestRuns, BaseRuns, BeforeRuns []float64
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
	return (&Document{Test: test, Base: base, Rows: rows}).WriteTable(w)
}

// WriteTable writes d's rows as an aligned plain-text table: the server
// under test, the baseline, the before server if d names one, and the
// ratios.
func (d *Document) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(d.header(), "\t"))
	for _, r := range d.Rows {
		met := r.Met
		if met == "" {
			met = "—"
		}
		if r.Note != "" {
			met += " (" + r.Note + ")"
		}
		fmt.Fprintln(tw, strings.Join(d.cells(r, orDash(r.Target), met), "\t"))
	}
	return tw.Flush()
}

// header returns the results table's column names.
func (d *Document) header() []string {
	if d.Before == "" {
		return []string{"scenario", "metric", d.Test, d.Base, "ratio", "target", "met?"}
	}
	return []string{"scenario", "metric", d.Test, d.Base, d.Before, "ratio", d.beforeRatioName(), "target", "met?"}
}

// cells returns r's cells in the order of header, unescaped.
func (d *Document) cells(r Row, target, met string) []string {
	if d.Before == "" {
		return []string{r.Scenario, r.Metric, FormatValue(r.Test), FormatValue(r.Base), FormatRatio(r.Ratio), target, met}
	}
	return []string{r.Scenario, r.Metric, FormatValue(r.Test), FormatValue(r.Base), FormatValue(r.Before),
		FormatRatio(r.Ratio), FormatRatio(r.BeforeRatio), target, met}
}

// beforeRatioName names the column of Test/Before: "wsd ÷ before" for the
// servers "wsd" and "wsd before".
func (d *Document) beforeRatioName() string {
	short, ok := strings.CutPrefix(d.Before, d.Test+" ")
	if !ok || short == "" {
		short = d.Before
	}
	return d.Test + " ÷ " + short
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
