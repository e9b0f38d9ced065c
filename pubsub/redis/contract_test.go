package redis_test

import (
	"testing"

	"github.com/wsd-server/wsd/pubsub/enginetest"
	"github.com/wsd-server/wsd/pubsub/internal/redistest"
	"github.com/wsd-server/wsd/pubsub/redis"
	"github.com/wsd-server/wsd/wsext"
)

// TestContract runs the engines' contract suite against one Redis and one
// Engine per Server, as between the processes of daemons on several hosts.
func TestContract(t *testing.T) {
	enginetest.Run(t, enginetest.Harness{Shared: true, New: func(t *testing.T, n, historySize int) []*wsext.Server {
		r := redistest.Start(t)
		srvs := make([]*wsext.Server, n)
		for i := range srvs {
			e, err := redis.New(redis.Options{URL: r.URL(), HistorySize: historySize})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			srvs[i] = wsext.NewServer(wsext.Options{Engine: e, HistorySize: historySize, PresenceEvents: true})
		}
		return srvs
	}})
}
