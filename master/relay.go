package master

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/pubsub/cluster"
	"github.com/wsd-server/wsd/pubsub/redis"
	"github.com/wsd-server/wsd/wsext"
)

// relayDialTimeout bounds a worker's wait for its first connection to the
// master's relay.
const relayDialTimeout = 10 * time.Second

// startRelay starts the master's side of the cluster pub/sub engine: a hub
// that relays each worker's publishes to the other workers. It listens on
// nothing: each worker asks for a connection over its broker socket, and
// gets one end of a new socketpair whose other end the master attaches to
// the hub (see broker.go). It always runs, whatever the number of
// processes and --redis, because a reload may change either; idle, it
// costs nothing.
func startRelay(log *slog.Logger) *cluster.Hub {
	return cluster.NewHub(cluster.Options{Logger: log})
}

// pubsubEngine makes a worker's pub/sub engine: Redis when --redis is set,
// whatever the number of processes; the master's relay, reached through
// the broker socket brk, with more than one process; none (in-process)
// otherwise. The returned function closes it.
func pubsubEngine(ctx context.Context, cfg config.Config, brk *workerBroker, log *slog.Logger) (wsext.Engine, func(), error) {
	switch {
	case cfg.Redis != "":
		redis.SetLogger(log)
		e, err := redis.New(redis.Options{URL: cfg.Redis, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("master: worker: pub/sub over Redis: %w", err)
		}
		return e, func() { e.Close() }, nil
	case processes(cfg) > 1 && brk != nil:
		ctx, cancel := context.WithTimeout(ctx, relayDialTimeout)
		defer cancel()
		e, err := cluster.NewEngine(ctx, brk.dialRelay, cluster.Options{Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("master: worker: %w", err)
		}
		return e, func() { e.Close() }, nil
	}
	return nil, func() {}, nil
}
