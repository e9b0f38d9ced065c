// Package poller runs event loops over non-blocking sockets: N loops (one
// per GOMAXPROCS by default), each with its own epoll set, that run a
// handler to completion on the goroutine that saw its descriptor ready,
// with no hand-off to another goroutine. Work from other goroutines
// reaches a handler's loop through Schedule: a ready list and an eventfd
// wake-up.
//
// A loop whose goroutine stays in one handler's turn (a callback that
// blocks) is given a new goroutine within one or two StallCheck intervals,
// and OnStall is told; the stuck goroutine leaves when its turn ends. The
// poller never runs two turns of one handler at once as long as the handler
// serialises its own turns (wsext's Conn does, with a lock it never waits
// for on a loop).
//
// The poller knows nothing of WebSockets: it is wsext's transport for
// plain TCP on Linux. Elsewhere New returns errors.ErrUnsupported and
// wsext runs each connection on a goroutine of its own.
package poller
