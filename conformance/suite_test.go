package conformance_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/conformance"
	"github.com/wsd-server/wsd/worker"
)

// startWorker serves cfg with worker.Run on a fresh 127.0.0.1 port until the
// test ends, and returns the echo endpoint as a Target.
func startWorker(t *testing.T, cfg config.Config) *conformance.Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	go func() {
		done <- worker.Run(ctx, cfg, ln, worker.Options{
			Logger: logger,
			Ready:  func() { once.Do(func() { close(ready) }) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("worker.Run returned before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("worker not ready after 10s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(cfg.ShutdownTimeout + 5*time.Second):
			t.Errorf("worker did not stop within %s", cfg.ShutdownTimeout+5*time.Second)
		}
	})
	return &conformance.Target{
		Addr:           ln.Addr().String(),
		MaxMessageSize: cfg.MaxMsgSize,
		Timeout:        5 * time.Second,
	}
}

// TestConformance runs the whole suite against wsd's worker: the
// compression cases against one with permessage-deflate enabled, the rest
// against the default configuration. Every case must be OK or NON-STRICT.
func TestConformance(t *testing.T) {
	cfg := config.Default()
	cfg.ShutdownTimeout = 5 * time.Second
	plain := startWorker(t, cfg)
	cfg.Compression = true
	compressed := startWorker(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var report conformance.Report
	for _, c := range conformance.Cases() {
		target := plain
		if c.Compression {
			target = compressed
		}
		t.Run(c.ID, func(t *testing.T) {
			res := conformance.RunCase(ctx, target, c)
			report.Add(c, res)
			if res.Verdict == conformance.Failed {
				t.Errorf("%s %s: %s\n  case: %s", c.ID, res.Verdict, res.Reason, c.Description)
			} else if testing.Verbose() {
				t.Logf("%s: %s", res.Verdict, res.Reason)
			}
		})
	}
	var table strings.Builder
	report.WriteTo(&table)
	if t.Failed() || testing.Verbose() {
		t.Log("\n" + table.String())
	}
	if n := len(report.Results); n < 150 {
		t.Errorf("suite ran %d cases, want at least 150", n)
	}
	t.Log(report.Summary())
}
