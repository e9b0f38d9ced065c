// Package redis is the pub/sub engine between wsd daemons on different
// hosts: a wsext.Engine over Redis PUBLISH and SUBSCRIBE, with the
// go-redis client.
//
// Every process (each worker of each daemon) has its own Engine: one
// connection that SUBSCRIBEs to the channels the process has subscribers
// for, and a small pool for PUBLISH. A wsext channel "room" is the Redis
// channel "wsd:room" (Options.Prefix), so wsd can share a Redis with other
// applications; messages on it carry a version, a text flag and the
// publishing Engine's random origin id before the data, and an Engine
// drops its own messages, which wsext has delivered locally already.
// Messages on the prefixed channels that wsd did not publish are ignored.
//
// The Engine is also a wsext.HistoryEngine and a wsext.PresenceEngine: a
// Server that uses it keeps its channels' history and presence in Redis,
// shared by every host.
//
// # Guarantees
//
// Delivery is at most once. Publish waits for Redis's answer, so the
// messages one publisher sends on one channel reach Redis in order, and
// Redis delivers them in that order to every subscriber. A PUBLISH is
// never retried: one whose answer was lost may have been delivered.
//
// # Failures
//
// While Redis is down or does not answer within Options.Timeout, Publish
// returns an error wrapping ErrUnavailable and logs it (one line a second
// at most, with a count): the message reached the publisher's own
// process only. Once a publish has failed so, Publish fails at once
// without trying, but for one attempt a second, so that a Redis that does
// not answer holds up one publisher a second rather than all of them.
//
// PublishHistory, History and Presence fail within
// Options.RequestTimeout while Redis is down, with an error wrapping
// ErrUnavailable; PublishHistory's failures are logged as Publish's.
// Join and Leave never wait: their writes wait, in bounded memory, for
// Redis to come back (see Presence).
//
// Subscribe and Unsubscribe never wait for Redis: a goroutine of the
// Engine makes the subscriptions, and go-redis makes them again on every
// new connection. The subscription connection is redialled with backoff
// (50ms doubling to 2s, with jitter) and, once Redis is back, subscribes
// again to every channel; messages published while it was away are not
// replayed. A connection that stays silent for Options.HealthInterval is
// pinged, and replaced if the ping is not answered within another
// interval.
//
// # History
//
// With Options.HistorySize n > 0, PublishHistory keeps each channel's last
// n messages in Redis, under two keys (with Options.Prefix "wsd:"):
//
//   - wsd:history:<channel>, a stream: one entry per message, with fields
//     o (offset), d (data), t (1 for text) and n (the publishing Engine's
//     id and the origin it was given);
//   - wsd:meta:<channel>, a hash: e (the epoch) and o (the top offset).
//
// PublishHistory runs one Lua script: it reads the epoch, or makes a new
// random one if the hash has none (and deletes the stream, whose entries
// belong to a lost epoch), increments the offset, XADDs the message with
// MAXLEN n, trims by age and sets the keys' expiry (with a TTL), and
// PUBLISHes the message, its offset and epoch on the channel's Redis
// channel, the one Publish uses. Redis runs a script whole, one at a time,
// so that the order of the offsets is the order of the PUBLISHes: every
// subscriber gets a channel's messages in offset order, the publisher's
// own process included. The live payload has a version byte of its own,
// so an Engine tells it from Publish's.
//
// PublishHistory and ForwardHistory (the same without waiting for the
// position, wsext.HistoryForwarder) queue the message for one goroutine
// that sends the queue in order, up to 256 script calls to a pipeline: one
// order for both, a callback that publishes never waits for Redis, and a
// burst of publishes shares round trips. At most 16 MiB wait (ErrBacklog
// beyond); a failure after ForwardHistory returned is logged, rate
// limited, as Publish's.
//
// History waits until Redis has confirmed this Engine's SUBSCRIBE to the
// channel (a PING sent after it on the subscription connection comes back
// after the confirmation), then reads the hash and the newest top-offset
// entries of the stream in one script. Because the script that appends a
// message also publishes it, a message is either in the stream when
// History reads it or published later, to a connection already
// subscribed: History's answer and the deliveries after it miss nothing
// (wsext.HistoryEngine). After the read, History sends another PING and
// waits for its answer, which follows on the subscription connection
// every message published before the read: so the messages up to the top
// are delivered before History returns, and none after, where the Server
// would take it for a new one. The offsets of a stream are contiguous, so
// the answer is complete exactly when those entries are the offsets after
// the one asked for.
//
// A channel's history is lost, and its next publish starts a new epoch at
// offset 1, when its hash goes: expired, evicted, deleted, or with a Redis
// restarted without persistence. History tells a client whose epoch is
// gone that it was not recovered.
//
// With Options.HistoryTTL, a message leaves the history once it is older
// than the TTL: each publish trims the stream by age (XTRIM MINID, with
// Redis's clock), and History skips what is older still. Each publish
// also sets both keys to expire after the TTL, so that a channel quiet
// for longer than the TTL leaves nothing in Redis, and starts a new epoch
// when it is used again.
//
// Memory: a channel's history holds at most HistorySize messages (MAXLEN
// is exact), and with a TTL a quiet channel's goes altogether; but without
// a TTL every channel ever published on keeps its keys. The number of
// channels is bounded by Redis's maxmemory only: an operator should set
// it, with an evicting maxmemory-policy (allkeys-lru; the volatile ones
// evict the history keys only with a TTL), and should expect an evicted
// channel to start a new epoch. History needs Redis 6.2 or later (XTRIM
// MINID).
//
// # Presence
//
// Each channel's presence is a sorted set wsd:presence:<channel>, whose
// members are the clients and whose scores their expiry (unix ms, Redis's
// clock), and a hash wsd:presence-info:<channel> of their info; both keys
// expire with their last entry.
//
// Join and Leave change the Engine's own table of entries and return: a
// goroutine of the Engine writes the changes to Redis with a Lua script
// per channel, pipelined. Changes waiting for Redis are kept in a map, one
// per channel and client, of at most 65536; beyond that a change is not
// queued, which costs little: every entry is written again every
// PresenceTTL/3 (Options.PresenceTTL, 30 seconds by default) and after a
// reconnection to Redis, which restores them after a Redis restart, and
// an entry whose Leave was not written expires like a killed process's.
// Presence drops the expired entries and returns the others, with this
// process's own changes not yet written applied.
//
// A process killed without Leave refreshes nothing more: its entries
// expire within PresenceTTL. Close removes the Engine's entries, trying
// once, briefly, so that a clean exit leaves no entry behind.
package redis
