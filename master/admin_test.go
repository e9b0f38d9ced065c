package master

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the admin address's /metrics.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := adminGet(t, admin, "/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func adminGet(t *testing.T, admin, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sum adds up the samples of name whose labels include the given pairs.
func sum(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var total float64
	for _, m := range fams[name].GetMetric() {
		if !hasLabels(m, labels...) {
			continue
		}
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

func hasLabels(m *dto.Metric, labels ...string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool {
			return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
		}) {
			return false
		}
	}
	return true
}

// labelled returns the pids of the workers seen on name. Its worker label
// is the slot; wsd_worker_info of the same scrape maps slots to pids.
func labelled(fams map[string]*dto.MetricFamily, name string) []int {
	pidOf := workerPIDs(fams)
	var pids []int
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "worker" && l.GetValue() != "master" {
				pids = append(pids, pidOf[l.GetValue()])
			}
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// workerPIDs maps the worker label (the slot) to the pid, from
// wsd_worker_info.
func workerPIDs(fams map[string]*dto.MetricFamily) map[string]int {
	pidOf := make(map[string]int)
	for _, m := range fams["wsd_worker_info"].GetMetric() {
		var slot string
		var pid int
		for _, l := range m.Label {
			switch l.GetName() {
			case "worker":
				slot = l.GetValue()
			case "pid":
				pid, _ = strconv.Atoi(l.GetValue())
			}
		}
		pidOf[slot] = pid
	}
	return pidOf
}

// slotOf returns the worker label of the worker pid, from wsd_worker_info.
func slotOf(fams map[string]*dto.MetricFamily, pid int) string {
	for slot, p := range workerPIDs(fams) {
		if p == pid {
			return slot
		}
	}
	return "none"
}

func sorted(pids []int) []int {
	pids = slices.Clone(pids)
	slices.Sort(pids)
	return pids
}

// TestAdmin runs a daemon with --admin-address and checks, through the admin
// address only, that one scrape shows every worker and that the figures
// move with real traffic, a killed worker and a reload.
func TestAdmin(t *testing.T) {
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	s := startServer(t, serverOpts{processes: 2, args: []string{"--admin-address", admin, "--access-log"}})
	pids := sorted(s.workers())
	eventually(t, 10*time.Second, "/readyz to answer 200", func() bool {
		status, _ := adminGet(t, admin, "/readyz")
		return status == 200
	})
	if status, body := adminGet(t, admin, "/healthz"); status != 200 {
		t.Errorf("/healthz: %d %s", status, body)
	}

	before := scrape(t, admin)
	if got := labelled(before, "wsd_worker_up"); !slices.Equal(got, pids) {
		t.Fatalf("wsd_worker_up for workers %v, want %v", got, pids)
	}
	if got := labelled(before, "wsd_websocket_messages_total"); !slices.Equal(got, pids) {
		t.Fatalf("wsd_websocket_messages_total for workers %v, want %v", got, pids)
	}
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"wsd_worker_up", nil, 2},
		{"wsd_worker_slots", nil, 2},
		{"wsd_workers", []string{"state", "serving"}, 2},
		{"wsd_worker_restarts_total", nil, 0},
	} {
		if got := sum(before, w.name, w.labels...); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
	if sum(before, "go_goroutines") == 0 || sum(before, "process_resident_memory_bytes") == 0 {
		t.Error("no Go runtime or process metrics")
	}

	// Traffic: WebSockets on both workers echoing, and plain requests.
	const perWorker, msgs = 2, 10
	byWorker := dialSpread(t, s.addr, pids, perWorker)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conns := allConns(byWorker)
	for _, c := range conns {
		for i := range msgs {
			if err := c.echo(ctx, fmt.Sprintf("message %d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 5 {
		if _, err := get(ctx, s.addr); err != nil {
			t.Fatal(err)
		}
	}

	after := scrape(t, admin)
	n := float64(len(conns))
	for _, w := range []struct {
		name    string
		labels  []string
		atLeast float64
	}{
		{"wsd_websocket_messages_total", []string{"direction", "in"}, n * msgs},
		{"wsd_websocket_messages_total", []string{"direction", "out"}, n * msgs},
		{"wsd_websocket_bytes_total", []string{"direction", "in"}, n * msgs * float64(len("message 0"))},
		{"wsd_websocket_upgrades_total", []string{"result", "ok"}, n},
		{"wsd_http_requests_total", []string{"code", "200"}, 5},
		{"wsd_http_requests_total", []string{"code", "101"}, n},
	} {
		if d := sum(after, w.name, w.labels...) - sum(before, w.name, w.labels...); d < w.atLeast {
			t.Errorf("%s%v moved by %v, want at least %v", w.name, w.labels, d, w.atLeast)
		}
	}
	for pid, cs := range byWorker {
		if got := sum(after, "wsd_websocket_connections", "worker", slotOf(after, pid)); got != float64(len(cs)) {
			t.Errorf("worker %d: wsd_websocket_connections %v, want %d", pid, got, len(cs))
		}
	}

	// Every access line names its worker.
	accessBy := make(map[int]int)
	for _, l := range s.logLines() {
		if l["msg"] == "access" {
			w, _ := l["worker"].(float64)
			accessBy[int(w)]++
		}
	}
	for w := range accessBy {
		if !slices.Contains(pids, w) {
			t.Errorf("access lines name worker %d, not one of %v", w, pids)
		}
	}
	if len(accessBy) == 0 {
		t.Error("no access log lines")
	}

	// A killed worker: restarted, counted, and scraped under its new pid.
	victim := pids[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now []int
	eventually(t, 10*time.Second, "the killed worker's replacement to be scraped", func() bool {
		now = sorted(s.workers())
		m := scrape(t, admin)
		return len(now) == 2 && !slices.Contains(now, victim) &&
			sum(m, "wsd_worker_restarts_total") == 1 &&
			slices.Equal(labelled(m, "wsd_worker_up"), now) && sum(m, "wsd_worker_up") == 2
	})
	if status, body := adminGet(t, admin, "/readyz"); status != 200 {
		t.Errorf("/readyz after the restart: %d %s", status, body)
	}

	// A reload: counted, and every worker scraped is a new one.
	s.signal(syscall.SIGHUP)
	eventually(t, 15*time.Second, "the reload to be counted and its workers scraped", func() bool {
		m := scrape(t, admin)
		up := labelled(m, "wsd_worker_up")
		return sum(m, "wsd_reloads_total", "kind", "reload") == 1 && len(up) == 2 &&
			!slices.Contains(up, now[0]) && !slices.Contains(up, now[1]) && sum(m, "wsd_workers", "state", "serving") == 2
	})
	for _, c := range conns {
		c.CloseNow()
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Fatalf("master exit code %d", code)
	}
	if _, err := net.DialTimeout("tcp", admin, time.Second); err == nil {
		t.Error("the admin address still accepts after the master stopped")
	}
}

// TestAdminAddressInUse: an admin address that cannot be bound stops wsd
// before any worker starts, with an error naming it.
func TestAdminAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := launch(t, serverOpts{processes: 1, args: []string{"--admin-address", ln.Addr().String()}, noNotify: true})
	if code := s.wait(10 * time.Second); code == 0 {
		t.Fatal("wsd started with its admin address in use")
	}
	logs := s.logText()
	if !strings.Contains(logs, "admin address") || !strings.Contains(logs, ln.Addr().String()) {
		t.Errorf("the error does not name the admin address:\n%s", logs)
	}
	if strings.Contains(logs, "worker started") {
		t.Errorf("a worker started:\n%s", logs)
	}
}

// TestAdminOff: without --admin-address nothing listens for it.
func TestAdminOff(t *testing.T) {
	s := startServer(t, serverOpts{processes: 1})
	if strings.Contains(s.logText(), "admin address") {
		t.Error("the master logged an admin address without --admin-address")
	}
}
