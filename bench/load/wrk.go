package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// ErrNoWrk reports that the wrk HTTP benchmark tool is not installed.
var ErrNoWrk = errors.New("load: wrk is not installed")

// WrkResult is what one wrk run reported.
type WrkResult struct {
	// ReqPerSec is wrk's "Requests/sec".
	ReqPerSec float64
	// Output is wrk's whole report.
	Output string
}

// Wrk runs the wrk tool, when installed, against url with conns connections
// on threads threads (0 means 1) for duration. It is a cross-check of HTTP:
// a client written in C with its own event loop.
func Wrk(ctx context.Context, url string, conns, threads int, duration time.Duration) (WrkResult, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return WrkResult{}, ErrNoWrk
	}
	threads = min(max(threads, 1), max(conns, 1))
	secs := max(int(duration.Round(time.Second)/time.Second), 1)
	ctx, cancel := context.WithTimeout(ctx, duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path,
		"-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(max(conns, 1)), "-d"+strconv.Itoa(secs)+"s", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return WrkResult{Output: string(out)}, fmt.Errorf("load: wrk: %w: %s", err, truncate(out, 200))
	}
	rps, err := parseWrk(out)
	return WrkResult{ReqPerSec: rps, Output: string(out)}, err
}

// parseWrk finds "Requests/sec: 68123.45" in wrk's report and also rejects
// a run that saw socket errors or non-2xx answers.
func parseWrk(out []byte) (float64, error) {
	if bytes.Contains(out, []byte("Non-2xx or 3xx responses")) {
		return 0, fmt.Errorf("load: wrk got error responses: %s", truncate(out, 400))
	}
	for line := range bytes.Lines(out) {
		rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("Requests/sec:"))
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(string(bytes.TrimSpace(rest)), 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("load: wrk Requests/sec %q", bytes.TrimSpace(rest))
		}
		return v, nil
	}
	return 0, fmt.Errorf("load: no Requests/sec in wrk output: %s", truncate(out, 400))
}
