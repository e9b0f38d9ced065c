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
				"t": {{Metrics: Metrics{MsgPerSec: 90, CPUPerUnit: 5}}, {Metrics: Metrics{MsgPerSec: 110, CPUPerUnit: 4}}, {Err: errors.New("boom")}},
				"b": {{Metrics: Metrics{MsgPerSec: 100, CPUPerUnit: 5}}},
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
		{"idle", "RSS growth per idle conn, 5 000→10 000 (KB)", 1.5, 14, "yes", ""},
		{"idle", "RSS per idle conn at 10 000 (KB)", 2.5, 15, "", ""},
		{"idle", "kernel slab per conn, both ends (KB)", 7, 7, "", ""},
		{"echo", "msg/s", 100, 100, "yes", "t: 1 of 3 runs failed"},
		{"echo", "server CPU µs/msg", 4.5, 5, "yes", "t: 1 of 3 runs failed"},
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
	if !math.IsInf(rows[6].Ratio, 1) {
		t.Errorf("ratio against a zero baseline = %v, want +Inf", rows[6].Ratio)
	}
	// Without the reference scenario the stuck target is undecided.
	noRef := *res
	noRef.Config.Scenarios = slices.DeleteFunc(slices.Clone(res.Config.Scenarios), func(s Scenario) bool { return s.Name == "broadcast-100-4KiB" })
	if r := noRef.Rows(StandardChecks()); r[len(r)-1].Met != "" || !strings.Contains(r[len(r)-1].Note, "target needs broadcast-100-4KiB") {
		t.Errorf("stuck row without its reference: %+v", r[len(r)-1])
	}
	// Slowed down by the stuck receiver: 600 < 0.7 × 1000.
	res.Runs["broadcast-100-4KiB-stuck"]["t"][0].Metrics[DelivPerSec] = 600
	if got := res.Rows(StandardChecks())[6].Met; got != "no" {
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
		if sc.Name == "" || sc.Title == "" || sc.Unit() == "" || (sc.Mode != ModeIdle && sc.Duration != 3*time.Second) {
			t.Errorf("standard scenario %+v", sc)
		}
	}
}
