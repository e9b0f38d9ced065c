// Package pubsub is the home of wsd's pub/sub engines, the implementations
// of wsext.Engine that carry published messages between processes:
//
//   - in-process: no engine (wsext.Options.Engine nil); the default with
//     one worker process.
//   - cluster: between the workers of one wsd master, through a relay the
//     master runs; the default with --processes > 1.
//   - redis: between daemons on different hosts, through Redis PUBLISH and
//     SUBSCRIBE; used whenever --redis is set.
//
// This package itself holds only the end-to-end tests, which run real wsd
// daemons and a real redis-server.
//
// # Guarantees
//
// With every engine: delivery is at most once; the messages one publisher
// sends on one channel reach each subscriber in order; a subscriber that
// cannot keep up is closed by the slow-consumer limit (--max-backpressure,
// close code 1008) and holds up nobody. A message published while an
// engine cannot reach its peer (the master's relay, Redis) reaches the
// subscribers of the publishing process only, and the publisher gets an
// error. A subscription takes effect in its own process at once and
// elsewhere a round trip later.
package pubsub
