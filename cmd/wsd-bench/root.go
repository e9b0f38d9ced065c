package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/bench/load"
	"github.com/wsd-server/wsd/bench/procstat"
	"github.com/wsd-server/wsd/bench/progress"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wsd-bench",
		Short: "Benchmark wsd against a raw fasthttp/websocket server",
		Long: "wsd-bench generates WebSocket and HTTP load (echo, broadcast, idle, http) against a server,\n" +
			"or, with suite, starts wsd and the wsd-baseline server one after the other and compares them.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// Ten thousand connections need more descriptors than the usual
			// soft limit; servers started from here inherit the raised one.
			if _, err := procstat.RaiseFileLimit(); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "wsd-bench: warning:", err)
			}
			return nil
		},
	}
	root.AddCommand(newSuiteCmd(), newEchoCmd(), newBroadcastCmd(), newIdleCmd(), newHTTPCmd())
	return root
}

// runWithProgress shows progress on cmd's output while fn runs.
func runWithProgress(cmd *cobra.Command, label, unit string, fn func(counter *atomic.Int64) error) error {
	var counter atomic.Int64
	out := cmd.OutOrStdout()
	line := progress.Start(out, isTTY(out), label, unit, &counter, 0)
	err := fn(&counter)
	line.Stop()
	return err
}

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && progress.IsTerminal(f)
}

// printResult prints name/value pairs aligned.
func printResult(w io.Writer, pairs ...string) {
	width := 0
	for i := 0; i < len(pairs); i += 2 {
		width = max(width, len(pairs[i]))
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(w, "%-*s  %s\n", width, pairs[i], pairs[i+1])
	}
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) + " ms" }

func us(d time.Duration) string {
	if d == 0 {
		return "— (no --pid)"
	}
	return strconv.FormatFloat(float64(d)/1e3, 'f', 2, 64) + " µs"
}

func newEchoCmd() *cobra.Command {
	var o load.EchoOptions
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "Closed-loop echo: each connection sends a message and waits for it back",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res load.EchoResult
			label := fmt.Sprintf("echo %d B × %d", o.Size, o.Conns)
			err := runWithProgress(cmd, label, "msg/s", func(c *atomic.Int64) (err error) {
				o.Counter = c
				res, err = load.Echo(cmd.Context(), o)
				return err
			})
			if err != nil {
				return err
			}
			printResult(cmd.OutOrStdout(),
				"messages", strconv.FormatInt(res.Messages, 10),
				"msg/s", progress.Human(res.MsgPerSec()),
				"MB/s", progress.Human(res.MBPerSec()),
				"latency p50", ms(res.Latency.Quantile(0.5)),
				"latency p99", ms(res.Latency.Quantile(0.99)),
				"latency max", ms(res.Latency.Max()),
				"server CPU/msg", us(res.CPUPerMsg()))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "ws://127.0.0.1:8080/", "echo endpoint")
	f.IntVar(&o.Conns, "conns", 100, "connections")
	f.IntVar(&o.Size, "size", 64, "message size in bytes")
	f.IntVar(&o.Depth, "depth", 1, "messages in flight per connection")
	f.BoolVar(&o.Text, "text", false, "send text instead of binary messages")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "measured time")
	f.IntVar(&o.ServerPID, "pid", 0, "server process id, to measure its CPU time (with its children)")
	return cmd
}

func newBroadcastCmd() *cobra.Command {
	var o load.BroadcastOptions
	cmd := &cobra.Command{
		Use:   "broadcast",
		Short: "One sender, many receivers on a broadcast endpoint; every delivery is checked in order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res load.BroadcastResult
			label := fmt.Sprintf("broadcast %d B to %d", o.Size, o.Receivers)
			if o.Stuck > 0 {
				label += fmt.Sprintf(" + %d stuck", o.Stuck)
			}
			err := runWithProgress(cmd, label, "deliveries/s", func(c *atomic.Int64) (err error) {
				o.Counter = c
				res, err = load.Broadcast(cmd.Context(), o)
				return err
			})
			if err != nil {
				return err
			}
			printResult(cmd.OutOrStdout(),
				"messages sent", strconv.FormatInt(res.Sent, 10),
				"deliveries", strconv.FormatInt(res.Deliveries, 10),
				"deliveries/s", progress.Human(res.DeliveriesPerSec()),
				"complete", fmt.Sprintf("%v (%d missing)", res.Complete, res.Missing),
				"latency p50", ms(res.Latency.Quantile(0.5)),
				"latency p99", ms(res.Latency.Quantile(0.99)),
				"server CPU/delivery", us(res.CPUPerDelivery()))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "ws://127.0.0.1:8080/broadcast", "broadcast endpoint")
	f.IntVar(&o.Receivers, "receivers", 1000, "reading receivers")
	f.IntVar(&o.Stuck, "stuck", 0, "extra receivers that never read")
	f.IntVar(&o.Size, "size", 64, "message size in bytes (at least 16)")
	f.IntVar(&o.Window, "window", 32, "messages the sender may be ahead of the slowest receiver")
	f.IntVar(&o.Messages, "messages", 0, "stop after this many messages (0: run for --duration)")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "measured time (at most)")
	f.IntVar(&o.ServerPID, "pid", 0, "server process id, to measure its CPU time (with its children)")
	return cmd
}

func newIdleCmd() *cobra.Command {
	var (
		o     load.IdleOptions
		steps string
	)
	cmd := &cobra.Command{
		Use:   "idle",
		Short: "Open idle connections in steps and measure the server's memory per connection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Steps, err = parseSteps(steps); err != nil {
				return err
			}
			var res load.IdleResult
			err = runWithProgress(cmd, "idle", "conns/s opened", func(c *atomic.Int64) (err error) {
				o.Counter = c
				res, err = load.Idle(cmd.Context(), o)
				return err
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "server RSS before: %.1f MB\n", float64(res.Base.RSS)/1e6)
			for i, p := range res.Points {
				fmt.Fprintf(w, "%6d conns: RSS %.1f MB, %.2f KB/conn\n", p.Conns, float64(p.RSS)/1e6, res.PerConn(i)/1e3)
			}
			printResult(w,
				"slope", fmt.Sprintf("%.2f KB per additional idle connection", res.Slope()/1e3),
				"kernel slab", fmt.Sprintf("%.2f KB per connection (both ends, machine-wide)", res.KernelPerConn()/1e3))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "ws://127.0.0.1:8080/", "WebSocket endpoint")
	f.StringVar(&steps, "steps", "5000,10000", "total connection counts to measure at, comma-separated")
	f.IntVar(&o.ServerPID, "pid", 0, "server process id (required; its children are included)")
	f.DurationVar(&o.Settle, "settle", 5*time.Second, "most time to wait for the server's memory to settle per step")
	cmd.MarkFlagRequired("pid")
	return cmd
}

func parseSteps(s string) ([]int, error) {
	var steps []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n <= 0 || (len(steps) > 0 && n <= steps[len(steps)-1]) {
			return nil, fmt.Errorf("--steps %q: want ascending positive counts like 5000,10000", s)
		}
		steps = append(steps, n)
	}
	return steps, nil
}

func newHTTPCmd() *cobra.Command {
	var (
		o       load.HTTPOptions
		withWrk bool
	)
	cmd := &cobra.Command{
		Use:   "http",
		Short: "Keep-alive GET requests, one at a time per connection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res load.HTTPResult
			err := runWithProgress(cmd, fmt.Sprintf("http × %d", o.Conns), "req/s", func(c *atomic.Int64) (err error) {
				o.Counter = c
				res, err = load.HTTP(cmd.Context(), o)
				return err
			})
			if err != nil {
				return err
			}
			pairs := []string{
				"requests", strconv.FormatInt(res.Requests, 10),
				"req/s", progress.Human(res.ReqPerSec()),
				"latency p50", ms(res.Latency.Quantile(0.5)),
				"latency p99", ms(res.Latency.Quantile(0.99)),
				"server CPU/req", us(res.CPUPerReq()),
			}
			if withWrk {
				pairs = append(pairs, "wrk req/s", wrkLine(cmd.Context(), o))
			}
			printResult(cmd.OutOrStdout(), pairs...)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "http://127.0.0.1:8080/", "page to GET")
	f.IntVar(&o.Conns, "conns", 100, "connections")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "measured time")
	f.StringVar(&o.Expect, "expect", "", "body every response must have (empty: any)")
	f.IntVar(&o.ServerPID, "pid", 0, "server process id, to measure its CPU time (with its children)")
	f.BoolVar(&withWrk, "wrk", false, "also run wrk with the same connections, if installed")
	return cmd
}

func wrkLine(ctx context.Context, o load.HTTPOptions) string {
	r, err := load.Wrk(ctx, o.URL, o.Conns, 1, o.Duration)
	if err != nil {
		return err.Error()
	}
	return progress.Human(r.ReqPerSec)
}
