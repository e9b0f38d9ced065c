package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wsd-server/wsd/bench/baseline"
	"github.com/wsd-server/wsd/bench/report"
)

// With WSD_BENCH_FAKE_SERVER set, the test binary plays wsd or wsd-baseline:
// it serves the baseline on --port, ignoring a leading "serve" and other
// flags wsd would take.
func TestMain(m *testing.M) {
	if os.Getenv("WSD_BENCH_FAKE_SERVER") == "" {
		os.Exit(m.Run())
	}
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("fake", flag.ExitOnError)
	address := fs.String("address", "127.0.0.1", "")
	port := fs.Int("port", 0, "")
	fs.Int("processes", 1, "")
	fs.Parse(args)
	ln, err := net.Listen("tcp", net.JoinHostPort(*address, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	baseline.Serve(ctx, ln)
	os.Exit(0)
}

// run executes wsd-bench with args and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func startBaseline(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: baseline.New().Handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

func TestModes(t *testing.T) {
	addr := startBaseline(t)
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"echo", "--url", "ws://" + addr + "/", "--conns", "2", "--duration", "200ms", "--pid", pid},
			[]string{"msg/s", "latency p99", "server CPU/msg"}},
		{[]string{"echo", "--url", "ws://" + addr + "/", "--conns", "1", "--duration", "100ms"},
			[]string{"— (no --pid)"}},
		{[]string{"broadcast", "--url", "ws://" + addr + "/broadcast", "--receivers", "3", "--messages", "20", "--duration", "5s"},
			[]string{"messages sent        20", "deliveries           60", "complete             true (0 missing)"}},
		{[]string{"idle", "--url", "ws://" + addr + "/", "--steps", "5,10", "--pid", pid, "--settle", "500ms"},
			[]string{"    10 conns:", "slope"}},
		{[]string{"http", "--url", "http://" + addr + "/", "--conns", "2", "--duration", "200ms", "--expect", "Hello World!"},
			[]string{"req/s", "latency p50"}},
	}
	for _, tt := range tests {
		t.Run(tt.args[0], func(t *testing.T) {
			out, err := run(t, tt.args...)
			if err != nil {
				t.Fatalf("%v: %v\n%s", tt.args, err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("%v output lacks %q:\n%s", tt.args, w, out)
				}
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	tests := [][]string{
		{"idle", "--url", "ws://127.0.0.1:1/"}, // no --pid
		{"idle", "--url", "ws://127.0.0.1:1/", "--pid", "1", "--steps", "10,5"},
		{"echo", "--url", "ws://127.0.0.1:1/", "--duration", "100ms"}, // nothing listens on port 1
		{"suite", "--scenarios", "no-such-scenario"},
		{"echo", "extra"},
	}
	for _, args := range tests {
		if out, err := run(t, args...); err == nil {
			t.Errorf("%v succeeded:\n%s", args, out)
		}
	}
}

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"5000,10000", []int{5000, 10000}, false},
		{" 7 ", []int{7}, false},
		{"10,5", nil, true},
		{"5,5", nil, true},
		{"0", nil, true},
		{"", nil, true},
		{"a", nil, true},
	}
	for _, tt := range tests {
		got, err := parseSteps(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseSteps(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestSuiteWritesMarkdown(t *testing.T) {
	t.Setenv("WSD_BENCH_FAKE_SERVER", "1")
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	tests := []struct {
		name        string
		args        []string
		want, never []string // in the output and the file
	}{
		{"wsd and baseline", nil, []string{
			"[1/2] wsd", "[2/2] baseline", "| HTTP GET / × 100 conns | req/s |", "| echo 64 B × 100 conns | latency p99 (ms) |",
			"| scenario | metric | wsd | baseline | ratio | target | met? |",
		}, []string{"wsd before"}},
		{"with --before", []string{"--before", os.Args[0]}, []string{
			"[1/2] wsd        echo", "[1/2] wsd before echo", "[2/2] baseline", "| HTTP GET / × 100 conns | req/s |",
			"| scenario | metric | wsd | baseline | wsd before | ratio | wsd ÷ before | target | met? |",
			"| scenario | metric | wsd runs | baseline runs | wsd before runs |",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bench := filepath.Join(dir, "BENCHMARKS.md")
			hand := "# Benchmarks\n\nHand-written intro.\n\n" + report.BeginMarker + "\nold\n" + report.EndMarker + "\n\nHand-written outro.\n"
			if err := os.WriteFile(bench, []byte(hand), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"suite", "--wsd", os.Args[0], "--baseline", os.Args[0],
				"--scenarios", "echo-64B-100,http-100", "--runs", "1", "--duration", "200ms", "--out", bench}, tt.args...)
			out, err := run(t, args...)
			if err != nil {
				t.Fatalf("suite: %v\n%s", err, out)
			}
			b, err := os.ReadFile(bench)
			if err != nil {
				t.Fatal(err)
			}
			md := string(b)
			for _, want := range []string{"scenario", "HTTP GET / × 100 conns", "wrote the bench section"} {
				if !strings.Contains(out, want) {
					t.Errorf("suite output lacks %q:\n%s", want, out)
				}
			}
			for _, want := range append([]string{"Hand-written intro.", "Hand-written outro.",
				"serve --address 127.0.0.1 --port PORT --processes 1"}, tt.want...) {
				if !strings.Contains(out+md, want) {
					t.Errorf("output and BENCHMARKS.md lack %q:\n%s\n%s", want, out, md)
				}
			}
			for _, never := range tt.never {
				if strings.Contains(out+md, never) {
					t.Errorf("output or BENCHMARKS.md contain %q:\n%s\n%s", never, out, md)
				}
			}
			if strings.Contains(md, "\nold\n") {
				t.Errorf("old section kept:\n%s", md)
			}
		})
	}
}

func TestSuiteBadBefore(t *testing.T) {
	out, err := run(t, "suite", "--wsd", os.Args[0], "--baseline", os.Args[0], "--before", "/nonexistent/wsd-before")
	if err == nil || !strings.Contains(err.Error(), "--before") {
		t.Errorf("suite with a missing --before binary: %v\n%s", err, out)
	}
}
