// Package ratelog bounds the log lines that repeated errors can cause.
//
// A hostile client, a flapping Redis or an exhausted descriptor table can
// produce the same error thousands of times a second; logging each one
// turns a fault into a disk-filling flood. A Limiter lets the first line of
// each kind through, then at most one per interval, and the line that
// finally passes says how many were suppressed in between, so the operator
// still learns the rate.
//
// Kinds are keys chosen by the program (constant strings such as
// "accept" or "redis publish"), never client input, so the set of keys,
// and the Limiter's memory, stays bounded.
package ratelog
