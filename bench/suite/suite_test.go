package suite

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsd-server/wsd/bench/baseline"
	"github.com/wsd-server/wsd/bench/procstat"
)

// The test binary doubles as the server: with WSD_BENCH_TEST_SERVER set it
// runs the baseline (and, with WSD_BENCH_TEST_CHILD, forks a child the way
// wsd's master forks workers) instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("WSD_BENCH_TEST_SERVER") == "" {
		os.Exit(m.Run())
	}
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	address := fs.String("address", "127.0.0.1", "")
	port := fs.Int("port", 0, "")
	fs.Parse(os.Args[1:])
	if os.Getenv("WSD_BENCH_TEST_CHILD") != "" {
		child := exec.Command("sleep", "60")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if os.Getenv("WSD_BENCH_TEST_EXIT") != "" {
		fmt.Println("exiting at once")
		os.Exit(3)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*address, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := baseline.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func testServer(name string, env ...string) Server {
	return Server{
		Name:    name,
		Command: []string{os.Args[0], "--address", "{address}", "--port", "{port}"},
		// Without atexit_sleep_ms a race-enabled server takes a second to exit.
		Env: append([]string{"WSD_BENCH_TEST_SERVER=1", "GORACE=atexit_sleep_ms=0"}, env...),
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func alive(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie is as good as gone.
	return !strings.Contains(string(st), ") Z ")
}

func TestStartStopProcessTree(t *testing.T) {
	p, err := Start(testContext(t, 20*time.Second), testServer("tree", "WSD_BENCH_TEST_CHILD=1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	var pids []int
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && len(pids) < 2; time.Sleep(20 * time.Millisecond) {
		pids, _ = procstat.Tree(p.PID())
	}
	if len(pids) != 2 {
		t.Fatalf("server tree %v, want the server and its child", pids)
	}
	if err := p.Alive(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && alive(pids[1]); {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pids[1]) {
		t.Errorf("child %d outlived Stop", pids[1])
	}
	if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after Stop", p.Addr)
	}
}

func TestStartExitingServer(t *testing.T) {
	_, err := Start(testContext(t, 20*time.Second), testServer("quitter", "WSD_BENCH_TEST_EXIT=1"))
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exiting at once") {
		t.Fatalf("Start of an exiting server: %v", err)
	}
	if _, err := Start(testContext(t, 5*time.Second), Server{Name: "none", Command: []string{"/nonexistent/wsd"}}); err == nil {
		t.Error("Start of a missing program succeeded")
	}
}

func tinyScenarios() []Scenario {
	d := 200 * time.Millisecond
	return []Scenario{
		{Name: "idle-10000", Title: "idle 10 → 30", Mode: ModeIdle, Steps: []int{10, 30}},
		{Name: "echo-64B-100", Title: "echo 64 B × 4", Mode: ModeEcho, Conns: 4, Size: 64, Duration: d},
		{Name: "echo-64KiB-10", Title: "echo 64 KiB × 2", Mode: ModeEcho, Conns: 2, Size: 64 << 10, Duration: d},
		{Name: "broadcast-100-4KiB", Title: "broadcast to 3", Mode: ModeBroadcast, Receivers: 3, Size: 64, Duration: d},
		{Name: "http-100", Title: "http × 2", Mode: ModeHTTP, Conns: 2, Duration: d},
		{Name: "wrk-100", Title: "wrk × 2", Mode: ModeWrk, Conns: 2, Duration: time.Second},
	}
}

func TestExecute(t *testing.T) {
	var out bytes.Buffer
	cfg := Config{
		Test: testServer("test"), Base: testServer("base"),
		Scenarios: tinyScenarios(), Runs: 1, Out: &out,
	}
	res, err := Execute(testContext(t, 60*time.Second), cfg)
	t.Logf("suite output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	wrk := true
	if _, err := exec.LookPath("wrk"); err != nil {
		wrk = false
	}
	for _, sc := range cfg.Scenarios {
		for _, srv := range []string{"test", "base"} {
			runs := res.Runs[sc.Name][srv]
			if len(runs) != 1 {
				t.Errorf("%s/%s: %d runs, want 1", sc.Name, srv, len(runs))
				continue
			}
			if sc.Mode == ModeWrk && !wrk {
				if !errors.Is(runs[0].Err, ErrSkipped) {
					t.Errorf("wrk run without wrk: %v", runs[0].Err)
				}
				continue
			}
			if runs[0].Err != nil {
				t.Errorf("%s/%s: %v", sc.Name, srv, runs[0].Err)
			}
		}
	}
	if m := res.Median("echo-64B-100", "test", MsgPerSec); !(m > 0) {
		t.Errorf("echo median %v", m)
	}
	if m := res.Median("broadcast-100-4KiB", "base", Complete); m != 1 {
		t.Errorf("broadcast complete median %v", m)
	}
	if !strings.Contains(out.String(), "[2/6] test") || !strings.Contains(out.String(), "msg/s") {
		t.Errorf("suite output:\n%s", out.String())
	}

	rows := res.Rows(StandardChecks())
	byLabel := make(map[string]int)
	for i, r := range rows {
		byLabel[r.Scenario+"|"+r.Metric] = i
	}
	echo, ok := byLabel["echo 64 B × 4|msg/s"]
	if !ok {
		t.Fatalf("no echo row in %+v", rows)
	}
	if r := rows[echo]; math.IsNaN(r.Ratio) || r.Ratio <= 0 || (r.Met != "yes" && r.Met != "no") || r.Target == "" {
		t.Errorf("echo row %+v", r)
	}
	if _, ok := byLabel["echo 64 B × 1 000 conns|msg/s"]; ok {
		t.Error("a row for a scenario that did not run")
	}
	var md bytes.Buffer
	doc := res.Document("wsd-bench suite --runs 1", StandardChecks())
	if err := doc.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| echo 64 B × 4 | msg/s |", "wsd-bench echo --url ws://127.0.0.1:PORT/ --conns 4 --size 64 --duration 200ms",
		"WSD_BENCH_TEST_SERVER=1 GORACE=atexit_sleep_ms=0 " + os.Args[0] + " --address 127.0.0.1 --port PORT", "connections, on paper"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}

func TestRowsAndChecks(t *testing.T) {
	res := &Results{
		Config: Config{Test: Server{Name: "t"}, Base: Server{Name: "b"}, Scenarios: []Scenario{
			{Name: "echo-64B-100", Title: "echo"},
			{Name: "idle-10000", Title: "idle"},
			{Name: "broadcast-100-4KiB", Title: "ref"},
			{Name: "broadcast-100-4KiB-stuck", Title: "stuck"},
		}},
		Runs: map[string]map[string][]Run{
			"echo-64B-100": {
				"t": {{Metrics: Metrics{MsgPerSec: 120, CPUPerUnit: 3, P99: 9}}, {Metrics: Metrics{MsgPerSec: 140, CPUPerUnit: 4, P99: 11}}, {Err: errors.New("boom")}},
				"b": {{Metrics: Metrics{MsgPerSec: 100, CPUPerUnit: 5, P99: 8}}},
			},
			"idle-10000": {
				"t": {{Metrics: Metrics{IdleSlope: 1500, IdleLast: 2500, KernelPerConn: 7000}}},
				"b": {{Metrics: Metrics{IdleSlope: 14000, IdleLast: 15000, KernelPerConn: 7000}}},
			},
			"broadcast-100-4KiB": {
				"t": {{Metrics: Metrics{DelivPerSec: 1000, Complete: 1}}},
				"b": {{Metrics: Metrics{DelivPerSec: 900, Complete: 1}}},
			},
			"broadcast-100-4KiB-stuck": {
				"t": {{Metrics: Metrics{DelivPerSec: 800, Complete: 1}}},
				"b": {{Metrics: Metrics{DelivPerSec: 0, Complete: 0}}},
			},
		},
	}
	rows := res.Rows(StandardChecks())
	want := []struct {
		scenario, metric string
		test, base       float64
		met              string
		note             string
	}{
		{"idle", "RSS growth per idle conn, 5 000→10 000 (KB)", 1.5, 14, "no", ""}, // over 0.5 KB, whatever the baseline
		{"idle", "RSS per idle conn at 10 000 (KB)", 2.5, 15, "", ""},
		{"idle", "kernel slab per conn, both ends (KB)", 7, 7, "", ""},
		{"echo", "msg/s", 130, 100, "yes", "t: 1 of 3 runs failed"},          // 1.30× ≥ 1.25×
		{"echo", "server CPU µs/msg", 3.5, 5, "no", "t: 1 of 3 runs failed"}, // 0.70× > 0.65×
		{"echo", "latency p99 (ms)", 10, 8, "no", "t: 1 of 3 runs failed"},   // 1.25× > 1.0×
		{"ref", "deliveries/s (reference)", 1000, 900, "", ""},
		{"stuck", "deliveries/s to the 100 readers", 800, 0, "yes", "b: receivers missed messages"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.Scenario != w.scenario || r.Metric != w.metric || math.Abs(r.Test-w.test) > 1e-9 || math.Abs(r.Base-w.base) > 1e-9 || r.Met != w.met || r.Note != w.note {
			t.Errorf("row %d = %+v, want %+v", i, r, w)
		}
	}
	if !math.IsInf(rows[7].Ratio, 1) {
		t.Errorf("ratio against a zero baseline = %v, want +Inf", rows[7].Ratio)
	}
	// Without the reference scenario the stuck target is undecided.
	noRef := *res
	noRef.Config.Scenarios = slices.DeleteFunc(slices.Clone(res.Config.Scenarios), func(s Scenario) bool { return s.Name == "broadcast-100-4KiB" })
	if r := noRef.Rows(StandardChecks()); r[len(r)-1].Met != "" || !strings.Contains(r[len(r)-1].Note, "target needs broadcast-100-4KiB") {
		t.Errorf("stuck row without its reference: %+v", r[len(r)-1])
	}
	// Slowed down by the stuck receiver: 600 < 0.7 × 1000.
	res.Runs["broadcast-100-4KiB-stuck"]["t"][0].Metrics[DelivPerSec] = 600
	if got := res.Rows(StandardChecks())[7].Met; got != "no" {
		t.Errorf("stuck check with a collapsed rate: %q", got)
	}
}

func TestScenarioArgs(t *testing.T) {
	tests := []struct {
		sc   Scenario
		want string
	}{
		{Scenario{Mode: ModeEcho, Conns: 100, Size: 64, Duration: 3 * time.Second}, "echo --url ws://U/ --conns 100 --size 64 --duration 3s"},
		{Scenario{Mode: ModeBroadcast, Receivers: 100, Stuck: 1, Size: 4096, Window: 32, Duration: time.Second}, "broadcast --url ws://U/broadcast --receivers 100 --stuck 1 --size 4096 --window 32 --duration 1s"},
		{Scenario{Mode: ModeIdle, Steps: []int{5000, 10000}}, "idle --url ws://U/ --steps 5000,10000 --pid PID"},
		{Scenario{Mode: ModeHTTP, Conns: 100, Duration: time.Second}, "http --url http://U/ --conns 100 --duration 1s"},
	}
	for _, tt := range tests {
		if got := strings.Join(tt.sc.Args("U"), " "); got != tt.want {
			t.Errorf("Args = %q, want %q", got, tt.want)
		}
	}
	wrk := Scenario{Mode: ModeWrk, Conns: 100, Duration: 3 * time.Second}
	if got, want := wrk.CommandLine("H:1"), "wrk -t1 -c100 -d3s http://H:1/"; got != want {
		t.Errorf("wrk CommandLine = %q, want %q", got, want)
	}
	if got, want := tests[0].sc.CommandLine("U"), "wsd-bench "+tests[0].want; got != want {
		t.Errorf("CommandLine = %q, want %q", got, want)
	}
	for _, sc := range Standard(0) {
		if sc.Name == "" || sc.Title == "" || sc.Unit() == "" || (sc.Mode != ModeIdle && sc.Duration != DefaultDuration) {
			t.Errorf("standard scenario %+v", sc)
		}
	}
}

func TestOrder(t *testing.T) {
	two := []Server{{Name: "test"}, {Name: "base"}}
	three := []Server{{Name: "test"}, {Name: "base"}, {Name: "before"}}
	tests := []struct {
		name    string
		servers []Server
		want    [][]string // by run, from run 1
	}{
		{"two servers: ABBA", two, [][]string{{"test", "base"}, {"base", "test"}, {"test", "base"}, {"base", "test"}}},
		{"three servers: mirrored", three, [][]string{
			{"test", "base", "before"}, {"before", "base", "test"}, {"test", "base", "before"}, {"before", "base", "test"}}},
		{"one server", []Server{{Name: "test"}}, [][]string{{"test"}, {"test"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				var got []string
				for _, s := range Order(tt.servers, i+1) {
					got = append(got, s.Name)
				}
				if !slices.Equal(got, want) {
					t.Errorf("run %d: order %v, want %v", i+1, got, want)
				}
			}
			if tt.servers[0].Name != "test" {
				t.Errorf("Order reordered its argument: %v", tt.servers)
			}
		})
	}
}

func TestOrderBalancesPairs(t *testing.T) {
	// Over any two consecutive runs each pair of servers goes once each
	// way round, and test and base always run next to each other.
	servers := []Server{{Name: "test"}, {Name: "base"}, {Name: "before"}}
	for run := 1; run <= 4; run++ {
		pos := func(r int) map[string]int {
			m := make(map[string]int)
			for i, s := range Order(servers, r) {
				m[s.Name] = i
			}
			return m
		}
		a, b := pos(run), pos(run+1)
		for _, p := range [][2]string{{"test", "base"}, {"test", "before"}, {"base", "before"}} {
			if (a[p[0]] < a[p[1]]) == (b[p[0]] < b[p[1]]) {
				t.Errorf("runs %d and %d: %s and %s in the same order", run, run+1, p[0], p[1])
			}
		}
		if d := a["test"] - a["base"]; d != 1 && d != -1 {
			t.Errorf("run %d: test and base not adjacent: %v", run, a)
		}
	}
}

func TestConfigServers(t *testing.T) {
	before := Server{Name: "before"}
	tests := []struct {
		cfg  Config
		want []string
	}{
		{Config{Test: Server{Name: "test"}, Base: Server{Name: "base"}}, []string{"test", "base"}},
		{Config{Test: Server{Name: "test"}, Base: Server{Name: "base"}, Before: &before}, []string{"test", "base", "before"}},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range tt.cfg.Servers() {
			got = append(got, s.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Servers = %v, want %v", got, tt.want)
		}
	}
}

// beforeResults are the results of one echo scenario against three
// servers, or two when before is false.
func beforeResults(before bool) *Results {
	res := &Results{
		Config: Config{
			Test: Server{Name: "wsd", Command: []string{"bin/wsd", "serve"}},
			Base: Server{Name: "baseline", Command: []string{"bin/wsd-baseline"}},
			Runs: 2,
			Scenarios: []Scenario{
				{Name: "echo-64B-100", Title: "echo", Mode: ModeEcho, Conns: 100, Size: 64, Duration: time.Second},
				{Name: "broadcast-1000-4KiB", Title: "bc", Mode: ModeBroadcast, Receivers: 1000, Size: 4096, Duration: time.Second},
			},
		},
		Runs: map[string]map[string][]Run{
			"echo-64B-100": {
				"wsd":      {{Metrics: Metrics{MsgPerSec: 130}}, {Metrics: Metrics{MsgPerSec: 130}}},
				"baseline": {{Metrics: Metrics{MsgPerSec: 100}}, {Metrics: Metrics{MsgPerSec: 100}}},
			},
			"broadcast-1000-4KiB": {
				"wsd":      {{Metrics: Metrics{DelivPerSec: 1000, PeakRSS: 30e6, Complete: 1}}},
				"baseline": {{Metrics: Metrics{DelivPerSec: 500, PeakRSS: 20e6, Complete: 1}}},
			},
		},
	}
	if before {
		res.Config.Before = &Server{Name: "wsd before", Command: []string{"bin/wsd-before", "serve"}}
		res.Runs["echo-64B-100"]["wsd before"] = []Run{{Metrics: Metrics{MsgPerSec: 60}}, {Metrics: Metrics{MsgPerSec: 40}}, {Err: errors.New("boom")}}
		res.Runs["broadcast-1000-4KiB"]["wsd before"] = []Run{{Metrics: Metrics{DelivPerSec: 250, PeakRSS: 60e6, Complete: 0}}}
	}
	return res
}

func TestRowsWithBefore(t *testing.T) {
	type row struct {
		test, base, before, ratio, beforeRatio float64
		beforeRuns                             []float64
		met, note                              string
	}
	nan := math.NaN()
	tests := []struct {
		name   string
		before bool
		want   map[string]row // by scenario|metric
	}{
		{"without before", false, map[string]row{
			"echo|msg/s":                  {130, 100, 0, 1.3, 0, nil, "yes", ""},
			"bc|deliveries/s (reference)": {1000, 500, 0, 2, 0, nil, "", ""},
			"bc|server RSS peak (MB)":     {30, 20, 0, 1.5, 0, nil, "", ""},
			"echo|server CPU µs/msg":      {nan, nan, 0, nan, 0, nil, "", ""},
			"echo|latency p99 (ms)":       {nan, nan, 0, nan, 0, nil, "", ""},
		}},
		{"with before", true, map[string]row{
			// The target is decided against the baseline alone.
			"echo|msg/s":                  {130, 100, 50, 1.3, 2.6, []float64{60, 40}, "yes", "wsd before: 1 of 3 runs failed"},
			"bc|deliveries/s (reference)": {1000, 500, 250, 2, 4, []float64{250}, "", "wsd before: receivers missed messages"},
			"bc|server RSS peak (MB)":     {30, 20, 60, 1.5, 0.5, []float64{60}, "", "wsd before: receivers missed messages"},
			"echo|server CPU µs/msg":      {nan, nan, nan, nan, nan, nil, "", "wsd before: 1 of 3 runs failed"},
			"echo|latency p99 (ms)":       {nan, nan, nan, nan, nan, nil, "", "wsd before: 1 of 3 runs failed"},
		}},
	}
	same := func(a, b float64) bool { return math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) < 1e-9 }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := beforeResults(tt.before).Rows(StandardChecks())
			if len(rows) != len(tt.want) {
				t.Fatalf("%d rows, want %d: %+v", len(rows), len(tt.want), rows)
			}
			for _, r := range rows {
				w, ok := tt.want[r.Scenario+"|"+r.Metric]
				if !ok {
					t.Errorf("unexpected row %+v", r)
					continue
				}
				if !same(r.Test, w.test) || !same(r.Base, w.base) || !same(r.Before, w.before) || !same(r.Ratio, w.ratio) ||
					!same(r.BeforeRatio, w.beforeRatio) || !slices.Equal(r.BeforeRuns, w.beforeRuns) || r.Met != w.met || r.Note != w.note {
					t.Errorf("row %s|%s = %+v, want %+v", r.Scenario, r.Metric, r, w)
				}
			}
		})
	}
}

func TestDocumentBefore(t *testing.T) {
	tests := []struct {
		before      bool
		want, never []string
	}{
		{false, []string{"bin/wsd serve", "bin/wsd-baseline", "The RSS peak is the high water mark"},
			[]string{"bin/wsd-before", "earlier build"}},
		{true, []string{"bin/wsd serve", "bin/wsd-baseline", "bin/wsd-before serve", "wsd before is an earlier build of wsd"}, nil},
	}
	for _, tt := range tests {
		d := beforeResults(tt.before).Document("wsd-bench suite", StandardChecks())
		if wantName := map[bool]string{false: "", true: "wsd before"}[tt.before]; d.Before != wantName {
			t.Errorf("before %v: Document.Before = %q, want %q", tt.before, d.Before, wantName)
		}
		all := strings.Join(append(slices.Clone(d.Commands), d.Notes...), "\n")
		for _, w := range tt.want {
			if !strings.Contains(all, w) {
				t.Errorf("before %v: commands and notes lack %q:\n%s", tt.before, w, all)
			}
		}
		for _, n := range tt.never {
			if strings.Contains(all, n) {
				t.Errorf("before %v: commands and notes contain %q:\n%s", tt.before, n, all)
			}
		}
	}
}
