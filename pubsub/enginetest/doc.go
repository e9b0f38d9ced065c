// Package enginetest is the contract test suite of wsext's pub/sub
// engines: the same tests, run by Run, against the in-process engine (a
// Server with no Engine), the cluster engine (pubsub/cluster) and Redis
// (pubsub/redis). Each package gives Run a Harness that makes Servers
// sharing one engine; the tests then speak only wsext's API: publishing
// returns positions, subscriptions start from a position, presence lists
// the subscribers of every Server.
package enginetest
