// Package admin serves wsd's admin address: one Prometheus exposition for
// the whole daemon and the health checks that orchestrators probe.
//
// A wsd daemon is a master process and its workers. Each worker serves its
// own metrics with an Endpoint, over HTTP on the connections its master
// hands it (one end of a fresh socketpair per scrape, Target.Dial); the
// master's Server gathers every slot's worker's metrics at scrape time,
// adds a "worker" label holding the worker's slot number ("0", "1", ...,
// which a replacement keeps, so restarts and reloads make no new series),
// and serves them together with the master's own metrics, labelled
// worker="master":
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
// wsd_worker_info{worker="0",pid="1234"} maps each slot to its worker's
// process id, and every process serves wsd_build_info.
//
// The master's metrics carry the same label as the workers', with the value
// "master", rather than a label of their own: one label then names the
// process of every sample, "sum by (worker)" breaks any metric down by
// process, and a selector such as process_resident_memory_bytes{worker!="master"}
// needs no label that exists on only some series.
package admin
