package cluster_test

import (
	"github.com/wsd-server/wsd/pubsub/cluster"
	"github.com/wsd-server/wsd/wsext"
)

// The Engine meets wsext's interfaces by its methods alone: package cluster
// must not import wsext, which the master, importing cluster, must not
// depend on.
var (
	_ wsext.HistoryEngine  = (*cluster.Engine)(nil)
	_ wsext.PresenceEngine = (*cluster.Engine)(nil)
)
