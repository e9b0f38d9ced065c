// Command wsd-baseline is the raw fasthttp + fasthttp/websocket server that
// wsd-bench measures wsd against. It serves GET / ("Hello World!"), a
// WebSocket echo at / and a WebSocket broadcast at /broadcast, and prints
// "listening on ADDRESS" once it accepts connections.
//
//	wsd-baseline --address 127.0.0.1 --port 8080
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/wsd-server/wsd/bench/baseline"
	"github.com/wsd-server/wsd/bench/procstat"
)

func main() {
	address := flag.String("address", "127.0.0.1", "IP address to listen on")
	port := flag.Int("port", 8080, "TCP port to listen on (0 picks a free one)")
	flag.Parse()

	if _, err := procstat.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "wsd-baseline:", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*address, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsd-baseline:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Println("listening on", ln.Addr())
	if err := baseline.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "wsd-baseline:", err)
		os.Exit(1)
	}
}
