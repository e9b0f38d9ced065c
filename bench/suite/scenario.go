package suite

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wsd-server/wsd/bench/load"
	"github.com/wsd-server/wsd/bench/procstat"
)

// Mode is a kind of load.
type Mode string

// The modes of wsd-bench.
const (
	ModeEcho      Mode = "echo"
	ModeBroadcast Mode = "broadcast"
	ModeIdle      Mode = "idle"
	ModeHTTP      Mode = "http"
	ModeWrk       Mode = "wrk"
)

// Metric names, the keys of Metrics.
const (
	MsgPerSec      = "msg/s"
	MBPerSec       = "MB/s"
	P50            = "p50 ms"
	P99            = "p99 ms"
	CPUPerUnit     = "server CPU µs per unit"
	DelivPerSec    = "deliveries/s"
	Complete       = "complete"
	Missing        = "missing"
	ReqPerSec      = "req/s"
	IdleSlope      = "idle bytes/conn slope"
	IdleLast       = "idle bytes/conn at last step"
	IdleFirst      = "idle bytes/conn at first step"
	KernelPerConn  = "kernel slab bytes/conn"
	ServerBaseRSS  = "server RSS bytes before"
	ServerFinalRSS = "server RSS bytes at last step"
	PeakRSS        = "server RSS peak bytes"
)

// Metrics are the numbers one run produced, by metric name.
type Metrics map[string]float64

// Scenario is one benchmark configuration.
type Scenario struct {
	// Name is a short identifier ("echo-64B-100").
	Name string
	// Title describes the scenario in tables ("echo 64 B × 100 conns").
	Title string
	// Mode is the kind of load.
	Mode Mode
	// Conns is the number of connections (echo, http, wrk).
	Conns int
	// Size is the message size in bytes (echo, broadcast).
	Size int
	// Depth is the messages in flight per connection (echo).
	Depth int
	// Receivers, Stuck, Window and Messages configure broadcast.
	Receivers, Stuck, Window, Messages int
	// Steps are the connection counts of an idle run.
	Steps []int
	// Duration is the measured time of one run (all but idle).
	Duration time.Duration
}

// Unit is what the scenario's progress counter counts, per second.
func (s Scenario) Unit() string {
	switch s.Mode {
	case ModeEcho:
		return "msg/s"
	case ModeBroadcast:
		return "deliveries/s"
	case ModeIdle:
		return "conns/s opened"
	default:
		return "req/s"
	}
}

// DefaultDuration is the measured time of one run in the standard set. With
// start-up, connecting and settling, three runs of each scenario against
// three servers (wsd, the baseline and an earlier wsd) take about six
// minutes on a 2-core machine, against two about four.
const DefaultDuration = 2 * time.Second

// Standard returns the standard set, each measured run lasting d (0 means
// DefaultDuration).
func Standard(d time.Duration) []Scenario {
	if d <= 0 {
		d = DefaultDuration
	}
	return []Scenario{
		{Name: "idle-10000", Title: "idle 5 000 → 10 000 conns", Mode: ModeIdle, Steps: []int{5000, 10000}},
		{Name: "echo-64B-100", Title: "echo 64 B × 100 conns", Mode: ModeEcho, Conns: 100, Size: 64, Duration: d},
		{Name: "echo-64B-1000", Title: "echo 64 B × 1 000 conns", Mode: ModeEcho, Conns: 1000, Size: 64, Duration: d},
		{Name: "echo-64KiB-10", Title: "echo 64 KiB × 10 conns", Mode: ModeEcho, Conns: 10, Size: 64 << 10, Duration: d},
		{Name: "broadcast-1000", Title: "broadcast 64 B to 1 000", Mode: ModeBroadcast, Receivers: 1000, Size: 64, Window: 32, Duration: d},
		{Name: "broadcast-10000", Title: "broadcast 64 B to 10 000", Mode: ModeBroadcast, Receivers: 10000, Size: 64, Window: 4, Duration: d},
		{Name: "broadcast-1000-4KiB", Title: "broadcast 4 KiB to 1 000", Mode: ModeBroadcast, Receivers: 1000, Size: 4 << 10, Window: 32, Duration: d},
		{Name: "broadcast-100-4KiB", Title: "broadcast 4 KiB to 100", Mode: ModeBroadcast, Receivers: 100, Size: 4 << 10, Window: 32, Duration: d},
		{Name: "broadcast-100-4KiB-stuck", Title: "broadcast 4 KiB to 100 + 1 stuck", Mode: ModeBroadcast, Receivers: 100, Stuck: 1, Size: 4 << 10, Window: 32, Duration: d},
		{Name: "http-100", Title: "HTTP GET / × 100 conns", Mode: ModeHTTP, Conns: 100, Duration: d},
		{Name: "wrk-100", Title: "HTTP GET / × 100 conns (wrk)", Mode: ModeWrk, Conns: 100, Duration: d},
	}
}

// CommandLine returns the shell command that runs s once against a server
// listening on addr (host:port): wsd-bench, or wrk for ModeWrk.
func (s Scenario) CommandLine(addr string) string {
	if s.Mode == ModeWrk {
		return fmt.Sprintf("wrk -t1 -c%d -d%s http://%s/", max(s.Conns, 1), s.Duration, addr)
	}
	return "wsd-bench " + strings.Join(s.Args(addr), " ")
}

// Args returns the wsd-bench arguments that run s once against a server
// listening on addr (host:port).
func (s Scenario) Args(addr string) []string {
	url := "ws://" + addr + "/"
	switch s.Mode {
	case ModeBroadcast:
		url += "broadcast"
	case ModeHTTP, ModeWrk:
		url = "http://" + addr + "/"
	}
	a := []string{string(s.Mode), "--url", url}
	flag := func(name string, v int) {
		if v != 0 {
			a = append(a, "--"+name, strconv.Itoa(v))
		}
	}
	switch s.Mode {
	case ModeEcho:
		flag("conns", s.Conns)
		flag("size", s.Size)
		if s.Depth > 1 {
			flag("depth", s.Depth)
		}
	case ModeBroadcast:
		flag("receivers", s.Receivers)
		flag("stuck", s.Stuck)
		flag("size", s.Size)
		flag("window", s.Window)
		flag("messages", s.Messages)
	case ModeIdle:
		steps := make([]string, len(s.Steps))
		for i, n := range s.Steps {
			steps[i] = strconv.Itoa(n)
		}
		a = append(a, "--steps", strings.Join(steps, ","), "--pid", "PID")
	case ModeHTTP, ModeWrk:
		flag("conns", s.Conns)
	}
	if s.Mode != ModeIdle && s.Duration > 0 {
		a = append(a, "--duration", s.Duration.String())
	}
	return a
}

// ErrSkipped reports a scenario that cannot run here (wrk not installed).
var ErrSkipped = errors.New("skipped")

// Available returns an error wrapping ErrSkipped if s cannot run on this
// machine.
func (s Scenario) Available() error {
	if s.Mode == ModeWrk {
		if _, err := exec.LookPath("wrk"); err != nil {
			return fmt.Errorf("%w: wrk is not installed", ErrSkipped)
		}
	}
	return nil
}

// Run runs s once against the server listening on addr (host:port) whose
// process id is pid, counting progress in counter.
func (s Scenario) Run(ctx context.Context, addr string, pid int, counter *atomic.Int64) (Metrics, error) {
	ws, _ := load.WebSocketURL(addr, "/")
	httpURL, _ := load.HTTPURL(addr, "/")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	switch s.Mode {
	case ModeEcho:
		r, err := load.Echo(ctx, load.EchoOptions{URL: ws, Conns: s.Conns, Size: s.Size, Depth: s.Depth,
			Duration: s.Duration, ServerPID: pid, Counter: counter})
		if err != nil {
			return nil, err
		}
		return Metrics{MsgPerSec: r.MsgPerSec(), MBPerSec: r.MBPerSec(), P50: ms(r.Latency.Quantile(0.5)),
			P99: ms(r.Latency.Quantile(0.99)), CPUPerUnit: us(r.CPUPerMsg())}, nil
	case ModeBroadcast:
		bc, _ := load.WebSocketURL(addr, "/broadcast")
		r, err := load.Broadcast(ctx, load.BroadcastOptions{URL: bc, Receivers: s.Receivers, Stuck: s.Stuck,
			Size: s.Size, Window: s.Window, Messages: s.Messages, Duration: s.Duration, ServerPID: pid, Counter: counter})
		if err != nil {
			return nil, err
		}
		complete := 0.0
		if r.Complete {
			complete = 1
		}
		m := Metrics{DelivPerSec: r.DeliveriesPerSec(), Complete: complete, Missing: float64(r.Missing),
			P50: ms(r.Latency.Quantile(0.5)), P99: ms(r.Latency.Quantile(0.99)), CPUPerUnit: us(r.CPUPerDelivery())}
		// The server was started for this run, so its high water mark is
		// the peak of this scenario: connecting the receivers and the
		// broadcasts.
		if pid > 0 {
			if peak, err := procstat.PeakRSS(pid); err == nil {
				m[PeakRSS] = float64(peak)
			}
		}
		return m, nil
	case ModeIdle:
		r, err := load.Idle(ctx, load.IdleOptions{URL: ws, Steps: s.Steps, ServerPID: pid, Counter: counter})
		if err != nil {
			return nil, err
		}
		last := len(r.Points) - 1
		return Metrics{IdleSlope: r.Slope(), IdleFirst: r.PerConn(0), IdleLast: r.PerConn(last),
			KernelPerConn: r.KernelPerConn(), ServerBaseRSS: float64(r.Base.RSS), ServerFinalRSS: float64(r.Points[last].RSS)}, nil
	case ModeHTTP:
		r, err := load.HTTP(ctx, load.HTTPOptions{URL: httpURL, Conns: s.Conns, Duration: s.Duration,
			Expect: "Hello World!", ServerPID: pid, Counter: counter})
		if err != nil {
			return nil, err
		}
		return Metrics{ReqPerSec: r.ReqPerSec(), P50: ms(r.Latency.Quantile(0.5)), P99: ms(r.Latency.Quantile(0.99)),
			CPUPerUnit: us(r.CPUPerReq())}, nil
	case ModeWrk:
		r, err := load.Wrk(ctx, httpURL, s.Conns, 1, s.Duration)
		if errors.Is(err, load.ErrNoWrk) {
			return nil, fmt.Errorf("%w: wrk is not installed", ErrSkipped)
		}
		if err != nil {
			return nil, err
		}
		return Metrics{ReqPerSec: r.ReqPerSec}, nil
	}
	return nil, fmt.Errorf("suite: unknown mode %q", s.Mode)
}
