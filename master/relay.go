package master

import (
	"log/slog"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/pubsub/cluster"
)

// startRelay starts the master's side of the cluster pub/sub engine: a hub
// that relays each worker's publishes to the other workers, and keeps the
// channels' history (cfg.HistorySize, cfg.HistoryTTL) and presence for
// them. It listens on nothing: each worker asks for a connection over its
// broker socket, and gets one end of a new socketpair whose other end the
// master attaches to the hub (see broker.go). It always runs, whatever the
// number of processes and --redis, because a reload may change either;
// idle, it costs nothing. The hub is made once: a reload does not resize
// its history, which lasts until the master exits or re-executes itself.
// The workers' side, their engine, is chosen in package worker.
func startRelay(log *slog.Logger, cfg config.Config) *cluster.Hub {
	return cluster.NewHub(cluster.Options{
		Logger:          log,
		HistorySize:     cfg.HistorySize,
		HistoryTTL:      cfg.HistoryTTL,
		HistoryMaxBytes: cluster.DefaultHistoryMaxBytes,
	})
}
