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
// Subscribe and Unsubscribe never wait for Redis: a goroutine of the
// Engine makes the subscriptions, and go-redis makes them again on every
// new connection. The subscription connection is redialled with backoff
// (50ms doubling to 2s, with jitter) and, once Redis is back, subscribes
// again to every channel; messages published while it was away are not
// replayed. A connection that stays silent for Options.HealthInterval is
// pinged, and replaced if the ping is not answered within another
// interval.
package redis
