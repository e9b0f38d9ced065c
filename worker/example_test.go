package worker_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/worker"
)

// A program of its own can serve wsd's routes on any listener: Run serves
// until its context ends, then closes every WebSocket with 1001 and
// returns.
func ExampleRun() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, config.Default(), ln, worker.Options{Ready: func() { close(ready) }})
	}()
	<-ready

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body))

	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// 200 OK Hello World!
	// stopped: <nil>
}
