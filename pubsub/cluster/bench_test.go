package cluster_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsd-server/wsd/pubsub/cluster"
	"github.com/wsd-server/wsd/wsext"
)

// BenchmarkPublishHistory publishes 64-byte messages from one worker's
// Server to a subscriber in another, through a Hub that keeps the history:
// the worker to master to worker path with its numbering, as wsd runs it.
// The allocations are those of the whole path (both Servers, both Engines
// and the Hub run in this process). Publish does not wait for the position
// (ForwardHistory); PublishPosition does, a round trip per message.
func BenchmarkPublishHistory(b *testing.B) {
	for _, bc := range []struct {
		name string
		wait bool
	}{{"Publish", false}, {"PublishPosition", true}} {
		b.Run(bc.name, func(b *testing.B) {
			sock := filepath.Join(b.TempDir(), "hub.sock")
			hub, err := cluster.Listen(sock, cluster.Options{HistorySize: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer hub.Close()
			srvs := make([]*wsext.Server, 2)
			for i := range srvs {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				e, err := cluster.Dial(ctx, sock, cluster.Options{})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				srvs[i] = wsext.NewServer(wsext.Options{Engine: e, HistorySize: 1000})
			}
			var got atomic.Int64
			sub, _, err := srvs[1].SubscribeFuncWith("bench", func(wsext.Position, []byte, bool) { got.Add(1) }, wsext.SubscribeOptions{Since: &wsext.Position{}})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			msg := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if bc.wait {
					_, err = srvs[0].PublishPosition("bench", msg, false)
				} else {
					err = srvs[0].Publish("bench", msg, false)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			for deadline := time.Now().Add(time.Minute); got.Load() < int64(b.N); {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d delivered", got.Load(), b.N)
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
}
