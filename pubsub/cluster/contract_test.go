package cluster_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsd-server/wsd/pubsub/cluster"
	"github.com/wsd-server/wsd/pubsub/enginetest"
	"github.com/wsd-server/wsd/wsext"
)

// TestContract runs the engines' contract suite against a Hub and one
// Engine per Server, over a unix socket, as between wsd's workers.
func TestContract(t *testing.T) {
	enginetest.Run(t, enginetest.Harness{Shared: true, New: func(t *testing.T, n, historySize int) []*wsext.Server {
		sock := filepath.Join(t.TempDir(), "hub.sock")
		hub, err := cluster.Listen(sock, cluster.Options{HistorySize: historySize})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hub.Close() })
		srvs := make([]*wsext.Server, n)
		for i := range srvs {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			e, err := cluster.Dial(ctx, sock, cluster.Options{})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			srvs[i] = wsext.NewServer(wsext.Options{Engine: e, HistorySize: historySize, PresenceEvents: true})
		}
		return srvs
	}})
}
