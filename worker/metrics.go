package worker

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/wsext"
)

// metrics is a worker's Prometheus collector. The WebSocket figures are
// wsext's own counters, read at scrape time, so the message path pays
// nothing for them; only the HTTP responses are counted here, one atomic
// add per request.
type metrics struct {
	ws      *wsext.Server
	http    *fasthttp.Server
	refused func() uint64      // connections refused for --max-conns or --max-conns-per-ip
	accept  *acceptGuard       // failed accepts; nil leaves them out
	auth    *authenticator     // subscriber authentication; nil when off
	sse     *sseHub            // /sse streams; nil leaves them out
	status  [600]atomic.Uint64 // responses by status code; 0 holds the out-of-range ones
}

// The metric descriptions. Names follow Prometheus conventions: a _total
// suffix on counters, base units.
var (
	descConnections = prometheus.NewDesc("wsd_websocket_connections",
		"WebSocket connections open now.", nil, nil)
	descUpgrades = prometheus.NewDesc("wsd_websocket_upgrades_total",
		"WebSocket upgrade requests by result: ok, or the reason of the refusal (bad_request, method, version, origin, shutdown).",
		[]string{"result"}, nil)
	descClosed = prometheus.NewDesc("wsd_websocket_connections_closed_total",
		"WebSocket connections that ended, for any reason.", nil, nil)
	descMessages = prometheus.NewDesc("wsd_websocket_messages_total",
		"Complete WebSocket messages received (in) and sent (out).", []string{"direction"}, nil)
	descBytes = prometheus.NewDesc("wsd_websocket_bytes_total",
		"WebSocket bytes received (in, frame headers included) and sent (out, frame headers included).",
		[]string{"direction"}, nil)
	descCloseFrames = prometheus.NewDesc("wsd_websocket_close_frames_total",
		"WebSocket close frames sent and received, by direction and close code (1000-1015, application for 3000-4999, none for a frame without a code).",
		[]string{"direction", "code"}, nil)
	descPings = prometheus.NewDesc("wsd_websocket_pings_sent_total",
		"Pings sent to idle WebSocket connections.", nil, nil)
	descTimeouts = prometheus.NewDesc("wsd_websocket_timeouts_total",
		"WebSocket connections closed for not answering a ping in time.", nil, nil)
	descBackpressure = prometheus.NewDesc("wsd_websocket_backpressure_closes_total",
		"WebSocket connections closed (1008) because their reader fell more than max-backpressure bytes behind.", nil, nil)
	descTooBig = prometheus.NewDesc("wsd_websocket_messages_too_big_total",
		"Incoming WebSocket messages over max-msg-size.", nil, nil)
	descPongsSkipped = prometheus.NewDesc("wsd_websocket_pongs_skipped_total",
		"Pings not answered with a pong of their own because a pong still waited for a reader that does not read (RFC 6455 5.5.3).", nil, nil)
	descTaskOverflows = prometheus.NewDesc("wsd_websocket_task_overflows_total",
		"Broadcast (Each) tasks refused to a connection with 4096 queued; the connection is closed with 1008.", nil, nil)
	descPanics = prometheus.NewDesc("wsd_websocket_panics_total",
		"Panics recovered in WebSocket callbacks, Each tasks and pub/sub engine calls.", nil, nil)
	descLoopStalls = prometheus.NewDesc("wsd_websocket_loop_stalls_total",
		"Event loops handed to a new goroutine because a callback blocked them.", nil, nil)
	descRecoveries = prometheus.NewDesc("wsd_pubsub_recoveries_total",
		"Subscribers (/pubsub and /sse) that came back with a position, by outcome: recovered (every missed message replayed), not_recovered (another epoch, too old, or more than half of max-backpressure), overflow (too much arrived meanwhile; closed to come back), failed (the engine did not answer).",
		[]string{"outcome"}, nil)
	descHTTPConns = prometheus.NewDesc("wsd_http_connections",
		"HTTP connections open now, upgraded ones excluded.", nil, nil)
	descRefused = prometheus.NewDesc("wsd_connections_refused_total",
		"Connections refused (503, or closed under TLS) for --max-conns or --max-conns-per-ip.", nil, nil)
	descAcceptErrors = prometheus.NewDesc("wsd_accept_errors_total",
		"Failed accepts, which the worker survives, by reason: emfile (out of descriptors), enfile (system file table full), enobufs, enomem, aborted (the connection failed first), other.",
		[]string{"reason"}, nil)
	descShed = prometheus.NewDesc("wsd_connections_shed_total",
		"Connections closed unserved because the worker was out of descriptors.", nil, nil)
	descRequests = prometheus.NewDesc("wsd_http_requests_total",
		"HTTP requests answered, by status code (101 for a successful WebSocket upgrade).", []string{"code"}, nil)
	descAuthFailures = prometheus.NewDesc("wsd_auth_failures_total",
		"Subscribers refused by token: missing, malformed, algorithm, signature, expired, not_yet_valid, claims (401); channel (403); publish (a /pubsub client closed with 4003).",
		[]string{"reason"}, nil)
	descAuthExpired = prometheus.NewDesc("wsd_auth_expired_total",
		"Open /pubsub connections (closed with 3005) and /sse streams ended because their token expired.", nil, nil)
	descSSESubscribers = prometheus.NewDesc("wsd_sse_subscribers",
		"Server-Sent Events streams (/sse) open now.", nil, nil)
	descSSEBackpressure = prometheus.NewDesc("wsd_sse_backpressure_closes_total",
		"/sse streams closed because their reader fell more than max-backpressure bytes behind.", nil, nil)
)

// newMetrics returns the collector of ws and srv; refused, if not nil,
// counts the connections the worker's limits refused.
func newMetrics(ws *wsext.Server, srv *fasthttp.Server, refused func() uint64) *metrics {
	return &metrics{ws: ws, http: srv, refused: refused}
}

// countRequests wraps next to count its responses by status code.
func (m *metrics) countRequests(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		next(ctx)
		m.count(ctx)
	}
}

// countErrors wraps the fasthttp.Server's ErrorHandler, which answers the
// requests that never reach the handler (431, 413, 408, 400), to count them
// too.
func (m *metrics) countErrors(next func(*fasthttp.RequestCtx, error)) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		next(ctx, err)
		m.count(ctx)
	}
}

func (m *metrics) count(ctx *fasthttp.RequestCtx) {
	code := ctx.Response.StatusCode()
	if code < 0 || code >= len(m.status) {
		code = 0
	}
	m.status[code].Add(1)
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descUpgrades, descClosed, descMessages, descBytes,
		descCloseFrames, descPings, descTimeouts, descBackpressure, descTooBig,
		descPongsSkipped, descTaskOverflows, descPanics, descLoopStalls, descRecoveries, descHTTPConns, descRefused, descAcceptErrors, descShed, descRequests,
		descAuthFailures, descAuthExpired, descSSESubscribers, descSSEBackpressure} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.ws.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnections, float64(st.Open))
	counter(descUpgrades, st.Upgrades, "ok")
	// Every reason is exported, zero or not, so that a rate() over a
	// refusal that has not happened yet is 0 rather than missing.
	for _, reason := range wsext.FailReasons() {
		counter(descUpgrades, st.UpgradeFailures[reason.String()], reason.String())
	}
	counter(descClosed, st.Closed)
	counter(descMessages, st.MessagesIn, "in")
	counter(descMessages, st.MessagesOut, "out")
	counter(descBytes, st.BytesIn, "in")
	counter(descBytes, st.BytesOut, "out")
	for code, n := range st.ClosesSent {
		counter(descCloseFrames, n, "sent", code)
	}
	for code, n := range st.ClosesReceived {
		counter(descCloseFrames, n, "received", code)
	}
	counter(descPings, st.PingsSent)
	counter(descTimeouts, st.Timeouts)
	counter(descBackpressure, st.BackpressureCloses)
	counter(descTooBig, st.TooBig)
	counter(descPongsSkipped, st.PongsSkipped)
	counter(descTaskOverflows, st.TaskOverflows)
	counter(descPanics, st.Panics)
	counter(descLoopStalls, st.LoopStalls)
	for _, o := range wsext.RecoveryOutcomes() {
		counter(descRecoveries, st.Recoveries[o.String()], o.String())
	}
	if m.http != nil {
		gauge(descHTTPConns, float64(m.http.GetOpenConnectionsCount()))
	}
	if m.refused != nil {
		counter(descRefused, m.refused())
	}
	if m.accept != nil {
		for r := range numAcceptReasons {
			counter(descAcceptErrors, m.accept.errs[r].Load(), acceptReasons[r].label)
		}
		counter(descShed, m.accept.Shed())
	}
	if m.auth != nil {
		for r := range numAuthReasons {
			counter(descAuthFailures, m.auth.failures[r].Load(), r.String())
		}
		counter(descAuthExpired, m.auth.expired.Load())
	}
	if m.sse != nil {
		gauge(descSSESubscribers, float64(m.sse.Count()))
		counter(descSSEBackpressure, m.sse.overflows.Load())
	}
	for code := range m.status {
		if n := m.status[code].Load(); n > 0 {
			label := "other"
			if code > 0 {
				label = strconv.Itoa(code)
			}
			counter(descRequests, n, label)
		}
	}
}
