package enginetest_test

import (
	"testing"

	"github.com/wsd-server/wsd/pubsub/enginetest"
	"github.com/wsd-server/wsd/wsext"
)

// TestInProcess runs the contract against a Server with no Engine, which
// keeps history and presence itself.
func TestInProcess(t *testing.T) {
	enginetest.Run(t, enginetest.Harness{New: func(t *testing.T, n, historySize int) []*wsext.Server {
		s := wsext.NewServer(wsext.Options{HistorySize: historySize, PresenceEvents: true})
		srvs := make([]*wsext.Server, n)
		for i := range srvs {
			srvs[i] = s
		}
		return srvs
	}})
}
