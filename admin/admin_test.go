package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wsd-server/wsd/internal/buildinfo"
)

// socketPair returns the two ends of a unix stream socketpair, what wsd's
// master hands a worker for each scrape.
func socketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
	}
	return conns[0], conns[1], nil
}

// dialer returns a Target.Dial that hands e one end of a new socketpair.
func dialer(e *Endpoint) func(context.Context) (net.Conn, error) {
	return func(context.Context) (net.Conn, error) {
		mine, theirs, err := socketPair()
		if err != nil {
			return nil, err
		}
		if err := e.ServeConn(theirs); err != nil {
			mine.Close()
			return nil, err
		}
		return mine, nil
	}
}

// fakeWorker serves a registry with one counter at value over socketpairs,
// as the worker process pid of slot does.
func fakeWorker(t testing.TB, slot, pid int, value float64) Target {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsd_test_messages_total", Help: "Test messages."}, []string{"direction"})
	c.WithLabelValues("in").Add(value)
	reg.MustRegister(c)
	e := NewEndpoint(reg)
	t.Cleanup(func() { e.Close() })
	return Target{Slot: slot, PID: pid, Dial: dialer(e)}
}

// serve runs s on 127.0.0.1 and returns its base URL.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// parse reads a text exposition.
func parse(t testing.TB, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, text)
	}
	return fams
}

// value finds the sample of fam whose labels include labels.
func value(fam *dto.MetricFamily, labels map[string]string) (float64, bool) {
	if fam == nil {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		for k, v := range labels {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func TestServerMetrics(t *testing.T) {
	gone := func(context.Context) (net.Conn, error) { return nil, errors.New("worker gone") }
	targets := []Target{
		fakeWorker(t, 0, 101, 3),
		fakeWorker(t, 1, 102, 4),
		{Slot: 2, PID: 103, Dial: gone}, // a worker gone
		{Slot: 3, PID: 104},             // a worker that cannot be reached at all
		fakeWorker(t, 1, 105, 5),        // a second worker on slot 1: left out
	}
	master := prometheus.NewRegistry()
	restarts := prometheus.NewCounter(prometheus.CounterOpts{Name: "wsd_worker_restarts_total", Help: "Restarts."})
	restarts.Add(2)
	forged := prometheus.NewGauge(prometheus.GaugeOpts{Name: "wsd_test_forged", Help: "A master metric that sets worker itself.",
		ConstLabels: prometheus.Labels{"worker": "7"}})
	forged.Set(1)
	master.MustRegister(restarts, forged)
	url := serve(t, New(Options{
		Gatherer: master,
		Workers:  func() []Target { return targets },
		Logger:   discardLogger(),
	}))

	status, text := get(t, url+"/metrics")
	if status != 200 {
		t.Fatalf("status %d: %s", status, text)
	}
	fams := parse(t, text)
	bi := buildinfo.Get()
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
		absent bool
	}{
		{name: "wsd_test_messages_total", labels: map[string]string{"worker": "0", "direction": "in"}, want: 3},
		{name: "wsd_test_messages_total", labels: map[string]string{"worker": "1", "direction": "in"}, want: 4},
		{name: "wsd_test_messages_total", labels: map[string]string{"worker": "2"}, absent: true},
		{name: "wsd_worker_up", labels: map[string]string{"worker": "0"}, want: 1},
		{name: "wsd_worker_up", labels: map[string]string{"worker": "1"}, want: 1},
		{name: "wsd_worker_up", labels: map[string]string{"worker": "2"}, want: 0},
		{name: "wsd_worker_up", labels: map[string]string{"worker": "3"}, want: 0},
		{name: "wsd_worker_info", labels: map[string]string{"worker": "0", "pid": "101"}, want: 1},
		{name: "wsd_worker_info", labels: map[string]string{"worker": "1", "pid": "102"}, want: 1},
		{name: "wsd_worker_info", labels: map[string]string{"worker": "3", "pid": "104"}, want: 1},
		{name: "wsd_worker_info", labels: map[string]string{"pid": "105"}, absent: true},
		{name: "wsd_worker_restarts_total", labels: map[string]string{"worker": "master"}, want: 2},
		{name: "wsd_test_forged", labels: map[string]string{"worker": "master"}, want: 1},
		{name: "wsd_test_forged", labels: map[string]string{"worker": "7"}, absent: true},
		{name: "wsd_build_info", labels: map[string]string{"worker": "master", "version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion}, want: 1},
		{name: "wsd_build_info", labels: map[string]string{"worker": "0", "version": bi.Version}, want: 1},
		{name: "wsd_build_info", labels: map[string]string{"worker": "1", "version": bi.Version}, want: 1},
		{name: "wsd_build_info", labels: map[string]string{"worker": "2"}, absent: true},
	}
	for _, tt := range tests {
		got, ok := value(fams[tt.name], tt.labels)
		switch {
		case tt.absent && ok:
			t.Errorf("%s%v = %v, want none", tt.name, tt.labels, got)
		case !tt.absent && (!ok || got != tt.want):
			t.Errorf("%s%v = %v (found %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	for name, want := range map[string]int{"wsd_test_messages_total": 2, "wsd_worker_up": 4, "wsd_worker_info": 4, "wsd_build_info": 3} {
		if n := len(fams[name].GetMetric()); n != want {
			t.Errorf("%d %s samples, want %d", n, name, want)
		}
	}
	// Every sample says which process it comes from.
	for name, f := range fams {
		for _, m := range f.Metric {
			if _, ok := value(&dto.MetricFamily{Metric: []*dto.Metric{m}}, nil); !ok {
				continue
			}
			n := 0
			for _, l := range m.Label {
				if l.GetName() == WorkerLabel {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: %d worker labels on %v", name, n, m.Label)
			}
		}
	}
}

// TestServerOpenMetrics checks that a scraper asking for OpenMetrics (as
// Prometheus does) gets it.
func TestServerOpenMetrics(t *testing.T) {
	targets := []Target{fakeWorker(t, 7, 4321, 1)}
	url := serve(t, New(Options{Workers: func() []Target { return targets }}))
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("Content-Type %q", ct)
	}
	if !bytes.Contains(b, []byte(`wsd_test_messages_total{direction="in",worker="7"} 1`)) || !bytes.HasSuffix(b, []byte("# EOF\n")) {
		t.Errorf("OpenMetrics exposition:\n%s", b)
	}
}

func TestHealth(t *testing.T) {
	var notReady atomic.Pointer[error]
	starting := errors.New("slot 1 has no worker serving")
	notReady.Store(&starting)
	url := serve(t, New(Options{Ready: func() error { return *notReady.Load() }}))

	if status, body := get(t, url+"/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
	if status, body := get(t, url+"/readyz"); status != 503 || !strings.Contains(body, "slot 1 has no worker serving") {
		t.Errorf("/readyz while starting: %d %q", status, body)
	}
	var none error
	notReady.Store(&none)
	if status, body := get(t, url+"/readyz"); status != 200 || body != "ready\n" {
		t.Errorf("/readyz when ready: %d %q", status, body)
	}
	if status, _ := get(t, url+"/nope"); status != 404 {
		t.Errorf("/nope: %d", status)
	}
	resp, err := http.Post(url+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", resp.StatusCode)
	}
}

// TestEndpointClose: Close returns even with a connection open that sends
// nothing, and a connection handed over afterwards is closed at once.
func TestEndpointClose(t *testing.T) {
	e := NewEndpoint(prometheus.NewRegistry())
	idle, theirs, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := e.ServeConn(theirs); err != nil {
		t.Fatal(err)
	}
	// A whole scrape on a second connection, while the first one idles.
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialer(e)(ctx)
	}}}
	resp, err := c.Get("http://worker/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /metrics: %s", resp.Status)
	}
	c.CloseIdleConnections()

	start := time.Now()
	e.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s with an idle connection open", d)
	}
	mine, late, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	if err := e.ServeConn(late); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServeConn after Close: %v, want net.ErrClosed", err)
	}
	mine.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := mine.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a connection handed over after Close: read %v, want EOF", err)
	}
}

func TestSetLabel(t *testing.T) {
	lp := func(n, v string) *dto.LabelPair { return &dto.LabelPair{Name: &n, Value: &v} }
	got := setLabel([]*dto.LabelPair{lp("zone", "a"), lp("worker", "forged"), lp("code", "200")}, "worker", "9")
	var names []string
	for _, l := range got {
		names = append(names, l.GetName()+"="+l.GetValue())
	}
	if want := "code=200 worker=9 zone=a"; strings.Join(names, " ") != want {
		t.Errorf("setLabel: %v, want %s", names, want)
	}
}

// FuzzDecode feeds arbitrary worker answers to the decoder: it must not
// panic, and whatever it accepts must carry exactly one worker label per
// sample, in sorted label order.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"), false)
	f.Add([]byte("b{worker=\"1\",z=\"2\"} 1\nb 2\n"), false)
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"), false)
	f.Add([]byte{0x05, 0x0a, 0x01, 0x61, 0x18, 0x00}, true)
	f.Fuzz(func(t *testing.T, data []byte, proto bool) {
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		if proto {
			format = expfmt.NewFormat(expfmt.TypeProtoDelim)
		}
		fams, err := decode(bytes.NewReader(data), format, "77")
		if err != nil {
			return
		}
		for _, f := range fams {
			for _, m := range f.Metric {
				n := 0
				for i, l := range m.Label {
					if l.GetName() == WorkerLabel {
						n++
						if l.GetValue() != "77" {
							t.Fatalf("worker label %q", l.GetValue())
						}
					}
					if i > 0 && m.Label[i-1].GetName() > l.GetName() {
						t.Fatalf("labels out of order: %v", m.Label)
					}
				}
				if n != 1 {
					t.Fatalf("%d worker labels on %v", n, m)
				}
			}
		}
	})
}

func BenchmarkGather(b *testing.B) {
	var targets []Target
	for slot := range 4 {
		targets = append(targets, fakeWorker(b, slot, 1000+slot, 1))
	}
	s := New(Options{Workers: func() []Target { return targets }})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
