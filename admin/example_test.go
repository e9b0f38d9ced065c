package admin_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsd-server/wsd/admin"
)

// A worker serves its registry on a unix socket; the master's Server
// gathers it with a worker label.
func Example() {
	dir, _ := os.MkdirTemp("", "wsd-example")
	defer os.RemoveAll(dir)

	// In the worker process.
	reg := prometheus.NewRegistry()
	opened := prometheus.NewCounter(prometheus.CounterOpts{Name: "example_opened_total", Help: "Opened."})
	reg.MustRegister(opened)
	opened.Add(3)
	ep, err := admin.ServeEndpoint(admin.SocketPath(dir, 4242), reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ep.Close()

	// In the master process.
	srv := admin.New(admin.Options{
		Workers: func() []admin.Target { return []admin.Target{{PID: 4242, Socket: ep.Path()}} },
		Ready:   func() error { return nil },
		Logger:  slog.New(slog.DiscardHandler),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(ln)
	defer srv.Close()

	for _, path := range []string{"/readyz", "/metrics"} {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if path == "/metrics" {
			fams, _ := srv.Gather()
			for _, f := range fams {
				if f.GetName() == "example_opened_total" {
					m := f.Metric[0]
					fmt.Printf("%s{%s=%q} %v\n", f.GetName(), m.Label[0].GetName(), m.Label[0].GetValue(), m.Counter.GetValue())
				}
			}
			continue
		}
		fmt.Printf("%s %d %s", path, resp.StatusCode, b)
	}
	// Output:
	// /readyz 200 ready
	// example_opened_total{worker="4242"} 3
}
