// Command wsd-bench measures wsd against a raw fasthttp + fasthttp/websocket
// server (wsd-baseline).
//
//	wsd-bench suite --out BENCHMARKS.md      the standard set, both servers, ratios
//	wsd-bench echo --url ws://127.0.0.1:8080/ --conns 100 --size 64
//	wsd-bench broadcast --url ws://127.0.0.1:8080/broadcast --receivers 1000
//	wsd-bench idle --url ws://127.0.0.1:8080/ --steps 5000,10000 --pid 1234
//	wsd-bench http --url http://127.0.0.1:8080/ --conns 100
//
// The load generator's WebSocket client is github.com/gobwas/ws, a library
// neither server uses. Progress is a line rewritten in place on a terminal
// and a line every two seconds otherwise.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wsd-bench:", err)
		os.Exit(1)
	}
}
