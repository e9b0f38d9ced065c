// Package cluster is the pub/sub engine between the worker processes of
// one wsd master: a publish in one worker reaches the subscribers in all of
// them.
//
// The master runs a Hub and each worker an Engine, a wsext.Engine, with one
// stream connection between them. wsd's master makes that connection a
// socketpair, one end attached to its Hub with Hub.Attach, the other
// handed to the worker, whose Engine (NewEngine) asks for a new one
// whenever it needs to connect; no file or path is involved. Listen and
// Dial do the same over a unix socket at a path, for other programs and
// tests. A worker tells the Hub which channels it subscribes to and sends
// it what it publishes; the Hub relays each publish to every other worker
// that subscribes to the channel. Messages do not go back to the worker
// that published them: wsext has already delivered them to its own
// subscribers.
//
// # Protocol
//
// One stream connection per worker carries length-prefixed frames both
// ways (see frame.go): subscribe, unsubscribe and publish. The Hub relays a
// publish by copying its bytes, with no re-encoding.
//
// # Guarantees
//
// Delivery is at most once. The messages one worker publishes on one
// channel reach every other worker in publish order: a worker writes its
// frames in order on its single connection, the Hub reads each connection
// on one goroutine and queues the frames for each destination in that
// order, and each destination is written, and read, in order.
//
// A worker that does not read its connection is not allowed to hold up the
// others: once Options.MaxQueue bytes wait for it, the Hub drops further
// messages for it and logs how many. The subscribers inside a worker are
// bounded the same way by wsext's MaxBackpressure.
//
// # Failures
//
// When the connection to the Hub breaks (the master re-executes itself for
// a binary upgrade, say), the Engine reconnects with backoff, from 10ms up
// to a second, and resubscribes every channel it holds. Until then Publish
// returns ErrDisconnected: the message reached the publisher's own
// process only. A worker that dies ends its connection, and the Hub drops
// it with its subscriptions; its replacement gets a connection of its own
// and subscribes afresh as its clients connect.
package cluster
