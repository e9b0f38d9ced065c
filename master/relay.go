package master

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/pubsub/cluster"
	"github.com/wsd-server/wsd/pubsub/redis"
	"github.com/wsd-server/wsd/wsext"
)

// relaySocket is the name of the pub/sub relay's socket in the runtime
// directory.
const relaySocket = "pubsub.sock"

// relayDialTimeout bounds a worker's wait for the master's relay.
const relayDialTimeout = 10 * time.Second

// startRelay starts the master's side of the cluster pub/sub engine: a hub
// on a unix socket in the runtime directory that relays each worker's
// publishes to the other workers. It always runs, whatever the number of
// processes and --redis, because a reload may change either; idle, it
// costs one goroutine.
func startRelay(runtimeDir string, log *slog.Logger) (*cluster.Hub, error) {
	h, err := cluster.Listen(filepath.Join(runtimeDir, relaySocket), cluster.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("master: pub/sub relay: %w", err)
	}
	return h, nil
}

// pubsubEngine makes a worker's pub/sub engine: Redis when --redis is set,
// whatever the number of processes; the master's relay with more than one
// process; none (in-process) otherwise. The returned function closes it.
func pubsubEngine(ctx context.Context, cfg config.Config, runtimeDir string, log *slog.Logger) (wsext.Engine, func(), error) {
	switch {
	case cfg.Redis != "":
		redis.SetLogger(log)
		e, err := redis.New(redis.Options{URL: cfg.Redis, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("master: worker: pub/sub over Redis: %w", err)
		}
		return e, func() { e.Close() }, nil
	case processes(cfg) > 1 && runtimeDir != "":
		ctx, cancel := context.WithTimeout(ctx, relayDialTimeout)
		defer cancel()
		e, err := cluster.Dial(ctx, filepath.Join(runtimeDir, relaySocket), cluster.Options{Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("master: worker: %w", err)
		}
		return e, func() { e.Close() }, nil
	}
	return nil, func() {}, nil
}
