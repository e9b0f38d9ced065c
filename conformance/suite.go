package conformance

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdict is the outcome of one case, with Autobahn|Testsuite's meaning.
type Verdict int

const (
	// OK means the server behaved exactly as RFC 6455 (and RFC 7692) expect.
	OK Verdict = iota
	// NonStrict means the server took a path the RFC allows but not the
	// preferred one, such as failing on invalid UTF-8 at the end of a message
	// rather than as soon as it could, or dropping TCP where a close frame
	// could have been sent. It counts as passed.
	NonStrict
	// Failed means the server broke the protocol: a wrong echo, a protocol
	// error left unanswered, a wrong close code, a timeout.
	Failed
)

// String returns the verdict as the report prints it.
func (v Verdict) String() string {
	switch v {
	case OK:
		return "OK"
	case NonStrict:
		return "NON-STRICT"
	case Failed:
		return "FAILED"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Result is what one case observed.
type Result struct {
	Verdict  Verdict
	Reason   string        // what the server did, and why that earns Verdict
	Duration time.Duration // set by RunCase
}

func ok(format string, args ...any) Result {
	return Result{Verdict: OK, Reason: fmt.Sprintf(format, args...)}
}

func nonStrict(format string, args ...any) Result {
	return Result{Verdict: NonStrict, Reason: fmt.Sprintf(format, args...)}
}

func failed(format string, args ...any) Result {
	return Result{Verdict: Failed, Reason: fmt.Sprintf(format, args...)}
}

// failedErr turns an error from a step into a FAILED result.
func failedErr(err error) Result { return failed("%v", err) }

// Case is one conformance test. Run talks to the server over a fresh TCP
// connection and judges what it does.
type Case struct {
	ID          string // Autobahn-style number, e.g. "5.19"; 0.x are handshake cases
	Category    string // e.g. "5 Fragmentation"
	Description string // what is sent and what is expected
	// Compression marks a case that needs a server with permessage-deflate
	// enabled (categories 12 and 13).
	Compression bool
	Run         func(ctx context.Context, t *Target) Result
}

// Target is the server under test: an echo endpoint that sends every message
// back with its type, as wsd's worker does at "/".
type Target struct {
	// Addr is the server's host:port.
	Addr string
	// Path is the endpoint's request target; "" means "/".
	Path string
	// Host is the Host header; "" means Addr.
	Host string
	// MaxMessageSize is the largest message the server accepts; the limit
	// cases (category 9) send messages up to it and one byte over it. 0 means
	// 262144, wsd's default.
	MaxMessageSize int64
	// Timeout bounds each wait for the server; 0 means 5 seconds. A case
	// never takes longer than a few timeouts.
	Timeout time.Duration
}

// ParseTarget returns a Target for a ws:// URL such as ws://127.0.0.1:3000/.
func ParseTarget(rawURL string) (*Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("conformance: parse target: %w", err)
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("conformance: target %q: only ws:// is supported", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &Target{Addr: addr, Path: u.RequestURI(), Host: u.Host}, nil
}

func (t *Target) path() string {
	if t.Path == "" {
		return "/"
	}
	return t.Path
}

func (t *Target) host() string {
	if t.Host == "" {
		return t.Addr
	}
	return t.Host
}

func (t *Target) timeout() time.Duration {
	if t.Timeout <= 0 {
		return 5 * time.Second
	}
	return t.Timeout
}

func (t *Target) maxMessage() int64 {
	if t.MaxMessageSize <= 0 {
		return 262144
	}
	return t.MaxMessageSize
}

// RunCase runs c against t within a deadline of a few of t's timeouts and
// times it. A panic in the case is reported as FAILED rather than crashing
// the caller.
func RunCase(ctx context.Context, t *Target, c Case) (res Result) {
	ctx, cancel := context.WithTimeout(ctx, 4*t.timeout())
	defer cancel()
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			res = failed("case panicked: %v\n%s", p, debug.Stack())
		}
		res.Duration = time.Since(start)
	}()
	res = c.Run(ctx, t)
	if res.Verdict != Failed && ctx.Err() != nil {
		res = failed("case deadline exceeded: %v", context.Cause(ctx))
	}
	return res
}

// CaseResult is one line of a Report.
type CaseResult struct {
	ID          string
	Category    string
	Description string
	Result
}

// Report is the outcome of a run.
type Report struct {
	Results []CaseResult
}

// Run runs cases one after another against t. The server sees one
// connection at a time, so a case that crashes it is the one that fails.
func Run(ctx context.Context, t *Target, cases []Case) Report {
	var r Report
	for _, c := range cases {
		if ctx.Err() != nil {
			break
		}
		r.Add(c, RunCase(ctx, t, c))
	}
	return r
}

// Add appends the result of c.
func (r *Report) Add(c Case, res Result) {
	r.Results = append(r.Results, CaseResult{ID: c.ID, Category: c.Category, Description: c.Description, Result: res})
}

// Count returns how many results have verdict v.
func (r Report) Count(v Verdict) int {
	n := 0
	for _, res := range r.Results {
		if res.Verdict == v {
			n++
		}
	}
	return n
}

// Summary returns the report's one-line summary, "N passed, M failed", where
// passed counts OK and NON-STRICT results.
func (r Report) Summary() string {
	failed := r.Count(Failed)
	return fmt.Sprintf("%d passed, %d failed", len(r.Results)-failed, failed)
}

// WriteTo writes the per-case table, grouped by category, then a line with
// the NON-STRICT count and finally the Summary line.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	category := ""
	for _, res := range r.Results {
		if res.Category != category {
			category = res.Category
			fmt.Fprintf(tw, "\n== %s\n", category)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.ID, res.Verdict, res.Duration.Round(time.Millisecond), oneLine(res.Reason))
	}
	tw.Flush()
	fmt.Fprintf(&b, "\n%d OK, %d NON-STRICT (allowed by the RFC), %d FAILED\n", r.Count(OK), r.Count(NonStrict), r.Count(Failed))
	b.WriteString(r.Summary() + "\n")
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// Cases returns every case of the suite in order: handshake (0.x) and
// Autobahn's categories 1-7, 9, 12 and 13. Cases with Compression set need
// a server that negotiates permessage-deflate.
func Cases() []Case {
	var all []Case
	for _, group := range [][]Case{
		handshakeCases(),
		framingCases(),
		pingCases(),
		reservedBitsCases(),
		opcodeCases(),
		fragmentationCases(),
		utf8Cases(),
		closeCases(),
		limitCases(),
		compressionCases(),
	} {
		all = append(all, group...)
	}
	return all
}

// errStep wraps what went wrong in a step with the step's description.
func errStep(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
