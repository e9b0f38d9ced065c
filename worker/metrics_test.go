package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/config"
)

// sample is one gathered value, found by name and labels.
func sample(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1 // absent
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	addr := servedWorker(t, config.Default(), Options{Metrics: reg})

	if got := sample(t, reg, "wsd_websocket_upgrades_total", "result", "origin"); got != 0 {
		t.Errorf("upgrade refusals by origin before any: %v, want an explicit 0", got)
	}
	for range 3 {
		rawRequest(t, addr, "GET", "/")
	}
	rawRequest(t, addr, "GET", "/nope")
	rawRequest(t, addr, "GET", "/broadcast") // not an upgrade: refused with 400
	// Answered by fasthttp's ErrorHandler, not the handler.
	rawRequest(t, addr, "GET", "/", "X-Big: "+strings.Repeat("x", 2*config.Default().MaxHeaderSize))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	const msgs = 5
	for range msgs {
		if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := sample(t, reg, "wsd_websocket_connections"); got != 1 {
		t.Errorf("open connections %v, want 1", got)
	}
	c.Close(websocket.StatusNormalClosure, "bye")

	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"wsd_http_requests_total", []string{"code", "200"}, 3},
		{"wsd_http_requests_total", []string{"code", "404"}, 1},
		{"wsd_http_requests_total", []string{"code", "400"}, 1},
		{"wsd_http_requests_total", []string{"code", "101"}, 1},
		{"wsd_http_requests_total", []string{"code", "431"}, 1},
		{"wsd_connections_refused_total", nil, 0},
		{"wsd_websocket_upgrades_total", []string{"result", "ok"}, 1},
		{"wsd_websocket_upgrades_total", []string{"result", "bad_request"}, 1},
		{"wsd_websocket_messages_total", []string{"direction", "in"}, msgs},
		{"wsd_websocket_messages_total", []string{"direction", "out"}, msgs},
		{"wsd_websocket_close_frames_total", []string{"direction", "received", "code", "1000"}, 1},
		{"wsd_websocket_connections_closed_total", nil, 1},
		{"wsd_websocket_connections", nil, 0},
	}
	// The close is handled by the server after the client's Close returns.
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range want {
		for {
			got := sample(t, reg, w.name, w.labels...)
			if got == w.value {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if got := sample(t, reg, "wsd_websocket_bytes_total", "direction", "in"); got < float64(msgs*len("hello")) {
		t.Errorf("bytes in %v, want at least %d", got, msgs*len("hello"))
	}
}

// TestMetricsLint runs the registry's own consistency checks and
// Prometheus's naming rules over the worker's metrics.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	servedWorker(t, config.Default(), Options{Metrics: reg})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "wsd_") {
			t.Errorf("%s: not in the wsd_ namespace", name)
		}
		if (f.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a counter's name ends in _total, and only a counter's", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s: no help", name)
		}
	}
}

func TestMetricsRegisteredTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(config.Default(), Options{Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(config.Default(), Options{Metrics: reg}); err == nil {
		t.Fatal("a second worker registered the same metrics in one registry")
	}
}

func BenchmarkCountRequests(b *testing.B) {
	m := newMetrics(nil, nil, nil)
	h := m.countRequests(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) })
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		h(&ctx)
	}
}
