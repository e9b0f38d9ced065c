// Command wsd-conformance runs the RFC 6455 / RFC 7692 conformance suite
// (package conformance) against a WebSocket echo server and prints a table
// of verdicts followed by the line "N passed, M failed".
//
// Usage:
//
//	wsd-conformance [flags] ws://host:port/path
//	wsd-conformance -self
//
// The target must echo every message with its type. With -compression the
// compression cases (12.x, 13.x) run too, and the target must negotiate
// permessage-deflate. With -self the command serves wsd's own worker on
// 127.0.0.1 (once with the default configuration and once with compression
// enabled) and tests that. The exit status is 1 when any case FAILED.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"regexp"
	"time"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/conformance"
	"github.com/wsd-server/wsd/worker"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wsd-conformance:", err)
		if errors.Is(err, errFailed) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

// errFailed reports that the suite ran and some case FAILED.
var errFailed = errors.New("conformance cases failed")

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsd-conformance", flag.ContinueOnError)
	fs.SetOutput(out)
	compression := fs.Bool("compression", false, "also run the permessage-deflate cases (12.x, 13.x); the target must negotiate it")
	self := fs.Bool("self", false, "test wsd's own worker, served in-process on 127.0.0.1")
	maxMsg := fs.Int64("max-msg-size", config.Default().MaxMsgSize, "the target's incoming message size limit in bytes")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for each server reaction")
	only := fs.String("cases", "", "run only the cases whose ID matches this regular expression, e.g. '^(6|7)\\.'")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wsd-conformance [flags] ws://host:port/path | -self")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var match *regexp.Regexp
	if *only != "" {
		var err error
		if match, err = regexp.Compile(*only); err != nil {
			return fmt.Errorf("-cases: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var plain, compressed *conformance.Target
	switch {
	case *self && fs.NArg() == 0:
		cfg := config.Default()
		cfg.MaxMsgSize = *maxMsg
		var err error
		if plain, err = serveWorker(ctx, cfg); err != nil {
			return err
		}
		cfg.Compression = true
		if compressed, err = serveWorker(ctx, cfg); err != nil {
			return err
		}
	case !*self && fs.NArg() == 1:
		t, err := conformance.ParseTarget(fs.Arg(0))
		if err != nil {
			return err
		}
		plain = t
		if *compression {
			compressed = t
		}
	default:
		fs.Usage()
		return errors.New("give either a ws:// URL or -self")
	}
	for _, t := range []*conformance.Target{plain, compressed} {
		if t != nil {
			t.MaxMessageSize = *maxMsg
			t.Timeout = *timeout
		}
	}

	var report conformance.Report
	for _, c := range conformance.Cases() {
		if match != nil && !match.MatchString(c.ID) {
			continue
		}
		target := plain
		if c.Compression {
			if target = compressed; target == nil {
				continue
			}
		}
		if ctx.Err() != nil {
			break
		}
		report.Add(c, conformance.RunCase(ctx, target, c))
	}
	if _, err := report.WriteTo(out); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if report.Count(conformance.Failed) > 0 {
		return errFailed
	}
	return nil
}

// serveWorker runs a wsd worker for cfg on a free 127.0.0.1 port until ctx
// ends, and returns its echo endpoint.
func serveWorker(ctx context.Context, cfg config.Config) (*conformance.Target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, cfg, ln, worker.Options{
			Logger: slog.New(slog.DiscardHandler),
			Ready:  func() { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		return nil, fmt.Errorf("worker: %w", err)
	case <-time.After(10 * time.Second):
		return nil, errors.New("worker not ready after 10s")
	}
	return &conformance.Target{Addr: ln.Addr().String()}, nil
}
