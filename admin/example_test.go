package admin_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsd-server/wsd/admin"
)

// A worker serves its registry on the connections its master hands it; the
// master's Server gathers it with a worker label holding its slot. Here both run in one
// process, and net.Pipe stands in for the socketpair wsd's master sends
// the worker for each scrape.
func Example() {
	// In the worker process.
	reg := prometheus.NewRegistry()
	opened := prometheus.NewCounter(prometheus.CounterOpts{Name: "example_opened_total", Help: "Opened."})
	reg.MustRegister(opened)
	opened.Add(3)
	ep := admin.NewEndpoint(reg)
	defer ep.Close()

	// In the master process.
	dial := func(context.Context) (net.Conn, error) {
		mine, theirs := net.Pipe()
		return mine, ep.ServeConn(theirs)
	}
	srv := admin.New(admin.Options{
		Workers: func() []admin.Target { return []admin.Target{{Slot: 0, PID: 4242, Dial: dial}} },
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
	// example_opened_total{worker="0"} 3
}
