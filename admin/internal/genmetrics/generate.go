package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wsd-server/wsd/admin"
	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/master"
	"github.com/wsd-server/wsd/worker"
)

// family is one metric of the reference.
type family struct {
	name, help, typ string
	labels          []string // its labels but the worker label, sorted
}

// origin is where a family comes from, which decides its section.
type origin int

const (
	fromWorker origin = iota // a worker's own metrics, and the master's about each worker
	fromMaster               // the master's own
	fromEvery                // every process's: the build, the Go runtime, the process
)

// generate returns docs/metrics.md.
func generate(ctx context.Context) ([]byte, error) {
	scraped, err := scrapeDaemon(ctx)
	if err != nil {
		return nil, err
	}
	described, err := workerFamilies()
	if err != nil {
		return nil, err
	}
	sections := make(map[origin]map[string]family)
	for o := range fromEvery + 1 {
		sections[o] = make(map[string]family)
	}
	for _, mf := range scraped {
		f, workers := fromDTO(mf)
		o := fromWorker
		if slices.Contains(workers, admin.MasterWorker) {
			o = fromMaster
			if len(workers) > 1 {
				o = fromEvery
			}
		}
		sections[o][f.name] = f
	}
	for _, f := range described {
		if _, ok := sections[fromWorker][f.name]; !ok {
			sections[fromWorker][f.name] = f
		}
	}
	for o, name := range map[origin]string{fromWorker: "wsd_worker_info", fromMaster: "wsd_worker_slots", fromEvery: "wsd_build_info"} {
		if _, ok := sections[o][name]; !ok {
			return nil, fmt.Errorf("the scrape has no %s where expected", name)
		}
	}
	return render(sections), nil
}

// scrapeDaemon runs a daemon with one worker and an admin address, both on
// loopback ports, and returns one scrape of its metrics.
func scrapeDaemon(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Address, cfg.Port, cfg.Processes = "127.0.0.1", port, 1
	cfg.LogLevel = "error"
	cfg.AdminAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(adminPort))
	// Subscriber tokens on, so that their metrics are there too.
	cfg.JWTSecret = "genmetrics-secret-of-at-least-32-bytes"
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("daemon configuration: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- master.Run(ctx, master.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	stop := func() error {
		cancel()
		return <-done
	}

	base := "http://" + cfg.AdminAddress
	for {
		if status, _, err := get(ctx, base+"/readyz", ""); err == nil && status == http.StatusOK {
			break
		}
		select {
		case err := <-done:
			done <- err
			cancel()
			return nil, fmt.Errorf("the daemon stopped before it was ready: %v\n%s", err, &logs)
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("the daemon was not ready in time: %w\n%s", ctx.Err(), &logs)
		case <-time.After(50 * time.Millisecond):
		}
	}
	status, body, err := get(ctx, base+"/metrics", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	stopErr := stop()
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("GET /metrics: %d %s", status, body)
	}
	if err != nil {
		return nil, errors.Join(err, stopErr)
	}
	if stopErr != nil {
		return nil, fmt.Errorf("stopping the daemon: %w\n%s", stopErr, &logs)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing the scrape: %w", err)
	}
	return fams, nil
}

func get(ctx context.Context, url, accept string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// fromDTO returns mf as a family, and the worker label values of its
// samples.
func fromDTO(mf *dto.MetricFamily) (family, []string) {
	f := family{name: mf.GetName(), help: mf.GetHelp(), typ: strings.ToLower(mf.GetType().String())}
	var workers []string
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			switch l.GetName() {
			case admin.WorkerLabel:
				workers = append(workers, l.GetValue())
			default:
				f.labels = append(f.labels, l.GetName())
			}
		}
	}
	slices.Sort(f.labels)
	f.labels = slices.Compact(f.labels)
	slices.Sort(workers)
	return f, slices.Compact(workers)
}

// workerFamilies returns every metric a worker's collector describes, the
// ones it has no sample of yet included.
func workerFamilies() ([]family, error) {
	var c capture
	cfg := config.Default()
	if _, err := worker.New(cfg, worker.Options{Metrics: &c, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return nil, fmt.Errorf("a worker: %w", err)
	}
	var fams []family
	for _, col := range c.collectors {
		types := make(map[string]string)
		metrics := make(chan prometheus.Metric)
		go func() {
			col.Collect(metrics)
			close(metrics)
		}()
		for m := range metrics {
			var pb dto.Metric
			if err := m.Write(&pb); err != nil {
				return nil, err
			}
			f, err := describe(m.Desc())
			if err != nil {
				return nil, err
			}
			types[f.name] = typeOf(&pb)
		}
		descs := make(chan *prometheus.Desc)
		go func() {
			col.Describe(descs)
			close(descs)
		}()
		for d := range descs {
			f, err := describe(d)
			if err != nil {
				return nil, err
			}
			f.typ = types[f.name]
			if f.typ == "" {
				// No sample to tell: Prometheus's naming rules do.
				f.typ = "gauge"
				if strings.HasSuffix(f.name, "_total") {
					f.typ = "counter"
				}
			}
			fams = append(fams, f)
		}
	}
	return fams, nil
}

// capture is a Registerer that keeps what is registered.
type capture struct{ collectors []prometheus.Collector }

func (c *capture) Register(col prometheus.Collector) error {
	c.collectors = append(c.collectors, col)
	return nil
}

func (c *capture) MustRegister(cols ...prometheus.Collector) {
	c.collectors = append(c.collectors, cols...)
}

func (c *capture) Unregister(prometheus.Collector) bool { return false }

// describe returns the name, help and labels of d, which client_golang
// keeps to itself: it makes a sample of d, with as many label values as
// d takes, and gathers it.
func describe(d *prometheus.Desc) (family, error) {
	for n := range 16 {
		values := slices.Repeat([]string{"x"}, n)
		m, err := prometheus.NewConstMetric(d, prometheus.UntypedValue, 0, values...)
		if err != nil {
			continue
		}
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(one{d, m}); err != nil {
			return family{}, err
		}
		mfs, err := reg.Gather()
		if err != nil {
			return family{}, err
		}
		f, _ := fromDTO(mfs[0])
		return f, nil
	}
	return family{}, fmt.Errorf("cannot describe %v", d)
}

// one collects a single metric.
type one struct {
	d *prometheus.Desc
	m prometheus.Metric
}

func (o one) Describe(ch chan<- *prometheus.Desc) { ch <- o.d }
func (o one) Collect(ch chan<- prometheus.Metric) { ch <- o.m }

func typeOf(m *dto.Metric) string {
	switch {
	case m.Counter != nil:
		return "counter"
	case m.Gauge != nil:
		return "gauge"
	case m.Histogram != nil:
		return "histogram"
	case m.Summary != nil:
		return "summary"
	}
	return "untyped"
}

// render writes the reference in Markdown.
func render(sections map[origin]map[string]family) []byte {
	var b bytes.Buffer
	b.WriteString(`# Metrics reference

<!-- Generated by "make docs" (go run ./admin/internal/genmetrics > docs/metrics.md)
     from the registries of a running daemon: do not edit by hand. -->

Every metric that ` + "`--admin-address`" + `'s ` + "`/metrics`" + ` serves. docs/operations.md § Metrics says how
one scrape gathers the whole daemon.

Every sample carries a ` + "`worker`" + ` label naming the process it comes from: a
worker's slot number (` + "`\"0\"`, `\"1\"`" + `, …), which the worker that replaces it after a
crash, a hang or a reload keeps, or ` + "`\"master\"`" + ` for the master's own metrics. A
restart or a reload therefore makes no new series; a worker's counters start
again at zero, which ` + "`rate()`" + ` and ` + "`increase()`" + ` handle. ` + "`wsd_worker_info`" + ` gives each
slot's current process id.

Sum over ` + "`worker`" + ` for the daemon's totals:
` + "`sum(rate(wsd_websocket_messages_total{direction=\"in\"}[1m]))`" + `; select
` + "`worker!=\"master\"`" + ` for the workers alone.
`)
	table := func(title, intro string, fams map[string]family) {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", title, intro)
		b.WriteString("| Metric | Type | Labels | Description |\n|---|---|---|---|\n")
		names := make([]string, 0, len(fams))
		for name := range fams {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			f := fams[name]
			labels := make([]string, len(f.labels))
			for i, l := range f.labels {
				labels[i] = "`" + l + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.name, f.typ, strings.Join(labels, ", "), escape(f.help))
		}
	}
	table("Per worker", "With `worker=\"<slot>\"`. `wsd_worker_up` and `wsd_worker_info` are the master's, about "+
		"each slot's worker; every other one is the worker's own, gathered from it at scrape time.", sections[fromWorker])
	table("From the master", "With `worker=\"master\"`. The master's counters start again at zero after a binary "+
		"upgrade (SIGUSR2), which re-executes it.", sections[fromMaster])
	table("Every process", "From the master (`worker=\"master\"`) and each worker (`worker=\"<slot>\"`): "+
		"`wsd_build_info`, which differs between them for a while after a binary upgrade, and "+
		"`prometheus/client_golang`'s Go runtime and process collectors.", sections[fromEvery])
	return b.Bytes()
}

// escape makes text safe in a Markdown table cell.
func escape(text string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(text)
}
