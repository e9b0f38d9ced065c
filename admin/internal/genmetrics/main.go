// Command genmetrics writes docs/metrics.md, the reference of every metric
// that wsd's admin address serves, from the registries themselves:
//
//	go run ./admin/internal/genmetrics > docs/metrics.md    (make docs)
//
// It runs a real daemon in this process (a master, and one worker that is
// this program re-executed as `genmetrics worker`, as wsd re-executes
// itself) on loopback ports, scrapes its admin address, and adds the
// worker metrics that a scrape of an idle daemon leaves out (a family with
// no sample yet, such as the close frames by code) from the descriptions
// the worker's collector gives.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/wsd-server/wsd/internal/workerproto"
	"github.com/wsd-server/wsd/worker"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerproto.Command {
		if err := runWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "genmetrics worker:", err)
			os.Exit(1)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	doc, err := generate(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genmetrics:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(doc); err != nil {
		fmt.Fprintln(os.Stderr, "genmetrics:", err)
		os.Exit(1)
	}
}

// runWorker serves as a worker of the daemon that generate runs, as
// `wsd worker` does.
func runWorker() error {
	in, err := worker.Inherit()
	if err != nil {
		return err
	}
	return worker.RunProcess(context.Background(), in)
}
