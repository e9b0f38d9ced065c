// Package admin serves wsd's admin address: one Prometheus exposition for
// the whole daemon and the health checks that orchestrators probe.
//
// A wsd daemon is a master process and its workers. Each worker serves its
// own metrics with an Endpoint, over HTTP on the connections its master
// hands it (one end of a fresh socketpair per scrape, Target.Dial); the
// master's Server gathers every live worker's metrics at scrape time, adds
// a "worker" label holding the worker's pid, and serves them together with
// the master's own metrics:
//
//	GET /metrics  the Prometheus exposition (text, or protobuf/OpenMetrics
//	              when the scraper asks for it)
//	GET /healthz  200 while the master runs
//	GET /readyz   200 when every worker slot has a worker that serves,
//	              503 with the reason otherwise
//
// A worker that cannot be reached during a scrape (it is restarting, or it
// was started by an older binary) is left out of that scrape, and its
// wsd_worker_up gauge is 0; the rest of the exposition is served.
package admin
