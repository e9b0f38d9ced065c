package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// WorkerLabel is the label that says which process of the daemon a sample
// comes from: a worker's slot number ("0", "1", ...), which its
// replacements keep, or MasterWorker for the master's own metrics. A
// restart or a reload therefore makes no new series.
const WorkerLabel = "worker"

// MasterWorker is the WorkerLabel value of the master's own metrics.
const MasterWorker = "master"

// maxExposition bounds what one worker may send; a few KiB is typical.
const maxExposition = 16 << 20

// Target is a worker whose metrics are gathered.
type Target struct {
	// Slot is the worker's slot, its WorkerLabel value. Slots are unique:
	// a Target whose Slot an earlier one of the same scrape has is left
	// out.
	Slot int
	// PID is the worker's process id, shown by wsd_worker_info.
	PID int
	// Dial opens a new connection to the worker's Endpoint. It is called
	// once per scrape, from the scrape's goroutine, and must return when
	// ctx ends.
	Dial func(ctx context.Context) (net.Conn, error)
}

var (
	descUp = prometheus.NewDesc("wsd_worker_up",
		"1 if the worker's metrics were gathered in this scrape, 0 if it could not be reached.",
		[]string{WorkerLabel}, nil)
	descInfo = prometheus.NewDesc("wsd_worker_info",
		"1 for the worker serving each slot, with its process id (pid), which changes when the worker is replaced.",
		[]string{WorkerLabel, "pid"}, nil)
)

// gatherWorkers fetches every target's metrics at once, each within
// timeout, and returns a Gatherer per target plus one for wsd_worker_up
// and wsd_worker_info.
func gatherWorkers(targets []Target, timeout time.Duration) prometheus.Gatherers {
	seen := make(map[int]bool, len(targets))
	targets = slices.DeleteFunc(slices.Clone(targets), func(t Target) bool {
		dup := seen[t.Slot]
		seen[t.Slot] = true
		return dup
	})
	gs := make(prometheus.Gatherers, len(targets)+1)
	up := make([]prometheus.Metric, len(targets))
	info := make([]prometheus.Metric, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		slot := strconv.Itoa(t.Slot)
		info[i] = prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, slot, strconv.Itoa(t.PID))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			fams, err := fetch(ctx, t)
			if err != nil {
				err = fmt.Errorf("worker %d (slot %d): %w", t.PID, t.Slot, err)
			}
			gs[i] = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, err })
			v := 1.0
			if err != nil {
				v = 0
			}
			up[i] = prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, v, slot)
		})
	}
	wg.Wait()
	gs[len(targets)] = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		reg := prometheus.NewPedanticRegistry()
		if len(targets) > 0 {
			reg.MustRegister(constCollector{descUp, up}, constCollector{descInfo, info})
		}
		return reg.Gather()
	})
	return gs
}

// fetch asks t's endpoint for its metrics in the delimited protobuf format
// and labels them with the worker's slot.
func fetch(ctx context.Context, t Target) ([]*dto.MetricFamily, error) {
	if t.Dial == nil {
		return nil, errors.New("no way to reach its metrics")
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return t.Dial(ctx)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics endpoint answered %s", resp.Status)
	}
	return decode(io.LimitReader(resp.Body, maxExposition), expfmt.ResponseFormat(resp.Header), strconv.Itoa(t.Slot))
}

// decode reads an exposition in format and sets WorkerLabel to worker on
// every metric, replacing a label of that name the worker may have set.
func decode(r io.Reader, format expfmt.Format, worker string) ([]*dto.MetricFamily, error) {
	var dec expfmt.Decoder
	switch format.FormatType() {
	case expfmt.TypeProtoDelim:
		// expfmt's own protobuf decoder trusts the length prefixes, which
		// lets one bad prefix allocate any amount of memory.
		dec = &protoDecoder{r: bufio.NewReader(r)}
	case expfmt.TypeTextPlain:
		dec = expfmt.NewDecoder(r, format)
	default:
		return nil, fmt.Errorf("metrics endpoint answered in an unexpected format %q", format)
	}
	var fams []*dto.MetricFamily
	for {
		mf := new(dto.MetricFamily)
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return fams, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decoding metrics: %w", err)
		}
		mf.Metric = slices.DeleteFunc(mf.Metric, func(m *dto.Metric) bool { return m == nil })
		for _, m := range mf.Metric {
			m.Label = setLabel(m.Label, WorkerLabel, worker)
		}
		fams = append(fams, mf)
	}
}

// protoDecoder reads length-delimited protobuf metric families of at most
// maxExposition bytes each, and checks names as expfmt's decoder does.
type protoDecoder struct{ r *bufio.Reader }

func (d *protoDecoder) Decode(mf *dto.MetricFamily) error {
	opts := protodelim.UnmarshalOptions{MaxSize: maxExposition}
	if err := opts.UnmarshalFrom(d.r, mf); err != nil {
		return err
	}
	if !model.UTF8Validation.IsValidMetricName(mf.GetName()) {
		return fmt.Errorf("invalid metric name %q", mf.GetName())
	}
	for _, m := range mf.Metric {
		for _, l := range m.GetLabel() {
			if !model.UTF8Validation.IsValidLabelName(l.GetName()) || !model.LabelValue(l.GetValue()).IsValid() {
				return fmt.Errorf("metric %s: invalid label %q=%q", mf.GetName(), l.GetName(), l.GetValue())
			}
		}
	}
	return nil
}

// setLabel returns labels with name set to value, sorted by name as the
// exposition requires.
func setLabel(labels []*dto.LabelPair, name, value string) []*dto.LabelPair {
	labels = slices.DeleteFunc(labels, func(l *dto.LabelPair) bool { return l.GetName() == name })
	labels = append(labels, &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)})
	slices.SortFunc(labels, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return labels
}

// labelled is g with WorkerLabel set to worker on every metric, replacing
// a label of that name g may have set.
func labelled(g prometheus.Gatherer, worker string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		fams, err := g.Gather()
		for _, mf := range fams {
			for _, m := range mf.Metric {
				m.Label = setLabel(m.Label, WorkerLabel, worker)
			}
		}
		return fams, err
	})
}

// constCollector collects metrics made beforehand.
type constCollector struct {
	desc    *prometheus.Desc
	metrics []prometheus.Metric
}

func (c constCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics {
		ch <- m
	}
}
