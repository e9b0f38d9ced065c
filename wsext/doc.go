// Package wsext is a WebSocket extension for fasthttp servers: the API of
// facil.io's lib-server WebSocket extension, in Go.
//
// # Overview
//
// A fasthttp handler upgrades a request with Upgrade and callbacks:
//
//	func handler(ctx *fasthttp.RequestCtx) {
//		wsext.Upgrade(ctx, wsext.Settings{
//			OnMessage: func(ws *wsext.Conn, data []byte, isText bool) {
//				ws.Write(data, isText) // echo
//			},
//		})
//	}
//
// The package-level functions use Default, a Server: the spec's global
// Websocket object. A program may make other Servers with NewServer; each
// has its own settings, connections, Count and Each.
//
// # Settings
//
// MaxMsgSize (default 262144 bytes) limits every incoming message, after
// decompression and summed over its fragments. It can change at any time
// and applies from the next message of every connection. A message over it
// closes the connection with 1009 (CloseMessageTooBig) before more than
// the limit is buffered.
//
// Timeout (default 40 s) is the idle time after which a ping is sent; each
// connection keeps the value current when it opened. A peer that then sends
// nothing at all, not even a pong, for another Timeout is closed and gets
// OnClose. Timing is checked once a second, so it is fuzzy by a second or
// two, as the spec allows.
//
// # Callbacks and ordering
//
// OnOpen comes first, then OnMessage for each message in order, never two
// at a time for one connection; OnShutdown when the server shuts down; and
// OnClose exactly once, also after a failed upgrade. The data given to
// OnMessage is valid only during the call: buffers are reused. A text
// message is always valid UTF-8; a connection that sends anything else is
// closed with 1007.
//
// Each(originator, task, arg, onFinish) runs task for every connection of
// the process but the originator, on another goroutine, then onFinish once.
// A task never runs at the same time as one of its connection's callbacks.
// Each calls run one after the other in call order.
//
// # Concurrency
//
// Every method of Conn is safe from any goroutine. Write never waits for
// the peer: what the socket cannot take is queued, and a connection whose
// queue would pass Options.MaxBackpressure is closed with 1008
// (ClosePolicyViolation) and Write returns ErrBackpressure, so one stuck
// reader never holds up a broadcast. Frames from concurrent writers never
// interleave. Close and CloseWithCode start the closing handshake and end
// the connection when the peer answers, or after a few seconds.
//
// # Engine
//
// After the handshake a plain TCP connection leaves fasthttp: its socket is
// watched by epoll and handed to a bounded pool of goroutines only when
// bytes arrive, so an idle connection costs about 1.3 KB and no goroutine.
// TLS connections, and any connection whose socket wsext cannot reach, run
// on a goroutine of their own (Options.GoroutinePerConn asks for that mode
// for all of them). The handshake is fasthttp/websocket's FastHTTPUpgrader;
// framing, UTF-8 validation, the close handshake and permessage-deflate are
// wsext's own and pass the conformance suite in this repository.
//
// # Compression
//
// With Options.Compression, permessage-deflate (RFC 7692) is accepted with
// no context takeover in either direction; offers wsext cannot honour (a
// server window under 15 bits, unknown parameters) are declined. Messages
// under Options.CompressionThreshold are sent uncompressed.
//
// # Pub/sub
//
// Subscribe, Unsubscribe and Publish carry messages by channel name;
// Conn.Publish excludes the sender. Each publish is encoded once per
// process. An Engine (Options.Engine; pubsub/cluster, pubsub/redis) takes
// messages to other processes and hosts: delivery is at most once, one
// publisher's messages on one channel arrive in order, and a slow
// subscriber is closed by MaxBackpressure.
package wsext
