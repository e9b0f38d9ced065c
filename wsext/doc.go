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
// OnClose. Timing is checked once a second (ReaperInterval): a ping never
// comes early and at most a second late, as the spec's fuzzy timing
// allows, and a Timeout under a second is rounded up to one second.
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
// Each(originator, task, arg, onFinish) queues task to every connection of
// the process but the originator and returns; each connection runs it in
// its own turn, like a callback, then onFinish runs once, in the
// originator's turn, after every task. A task never runs at the same time
// as one of its connection's callbacks, a connection busy in a callback
// delays only its own tasks, and one connection gets the tasks of several
// Each calls in call order. A callback must therefore never wait for its
// own connection's onFinish: it would wait for itself.
//
// # Concurrency
//
// Every method of Conn is safe from any goroutine. Write never waits for
// the peer: what the socket cannot take is queued, and a connection whose
// queue would pass Options.MaxBackpressure is closed with 1008
// (ClosePolicyViolation) and Write returns ErrBackpressure, so one stuck
// reader never holds up a broadcast. A writer that would rather wait
// watches Conn.BufferedAmount and Settings.OnDrain. Frames from concurrent
// writers never interleave. Close and CloseWithCode start the closing
// handshake and end the connection when the peer answers, or after a few
// seconds.
//
// # Resource model
//
// Every byte wsext holds has a bound and a policy at the bound. One
// hostile client can therefore cost at most its own row of this table,
// and never ends the process: every callback, Each task, onFinish and
// pub/sub Engine call runs under recover, and repeated errors log one line a
// second at most.
//
//	what is held                  bound                          at the bound
//	----------------------------  -----------------------------  ---------------------------------------
//	outgoing queue (data, pong)   MaxBackpressure (1 MiB) per    Write returns ErrBackpressure; queued
//	                              connection; an empty queue     whole frames are dropped, the rest of a
//	                              takes one message of any size  frame already begun is sent, then close
//	                                                             1008 at that frame boundary; the peer
//	                                                             has 3 s to read it, then a TCP reset
//	pong replies                  one queued pong per            further pings get no pong of their own
//	                              connection                     (Stats.PongsSkipped); RFC 6455 5.5.3
//	incoming message              MaxMsgSize, after inflating,   close 1009 before the excess is read
//	                              summed over fragments
//	incoming control frame        125 bytes                      close 1002
//	compression state             none between messages (no      -
//	                              context takeover); pooled
//	Each tasks queued to one      4096 per connection            close 1008 "too much pending work";
//	connection                                                   the tasks it will not run count as done
//	Each calls one connection     16 per connection              its socket is read no further until one
//	originated, unfinished                                       finishes: TCP slows the sender down
//	a broadcast message           one copy (PreparedMessage),    freed by Release
//	                              shared by every recipient
//	pub/sub delivery              each subscriber's queue        as the outgoing queue
//	channel history (optional)    HistorySize messages and       the oldest message goes; over
//	                              HistoryTTL per channel;        HistoryMaxBytes the least recently
//	                              HistoryMaxBytes (64 MiB) in    published channels are forgotten
//	                              all                            (their epoch changes)
//	history replayed to a         half of MaxBackpressure        further behind: not recovered, nothing
//	subscriber that comes back                                   replayed (it reloads its state)
//	live messages held while a    MaxBackpressure bytes per      the rest are dropped, and the
//	HistoryEngine's history is    subscription, for one round    subscriber is closed with 1013
//	read                          trip                           (ErrRecoveryOverflow) to resume
//	presence (without a           one entry per listed           ends with the subscription
//	PresenceEngine)               subscription
//	a SubscribeFunc subscriber    its function's own queue       the caller's policy (wsd's SSE streams
//	                                                             bound theirs by MaxBackpressure)
//	an idle connection            no buffer, no goroutine        -
//	closing handshake             3 s                            the connection is reset
//	idle peer                     Timeout, then a ping, then     close 1001 and reset
//	                              Timeout again
//
// Limits on connections themselves (how many, per address, handshake
// time) belong to the fasthttp server around wsext; the wsd daemon sets
// them (see its README).
//
// # Poller
//
// After the handshake a plain TCP connection leaves fasthttp: its socket
// joins one of GOMAXPROCS event loops (package wsext/internal/poller), each
// with its own epoll set. The loop that sees a socket readable reads it,
// parses, runs OnMessage and sends what was written, with no hand-off to
// another goroutine; writes from other goroutines, Each tasks and
// broadcasts reach the owning loop through its ready list. An idle
// connection costs its Conn (about 500 bytes) and no goroutine or buffer.
// A broadcast queues one shared, reference-counted frame to every
// recipient, never a copy.
//
// Callbacks therefore run on a loop shared with other connections and
// should not block. One that does is noticed within 100-200 ms: its loop's
// other connections move to a new goroutine, the stall is counted
// (Stats.LoopStalls) and logged. A program whose callbacks must block
// (database calls, say) sets Options.GoroutinePerConn, which runs every
// connection on a goroutine of its own, as TLS connections always are.
//
// The handshake is fasthttp/websocket's FastHTTPUpgrader; framing (a
// frameReader that knows no connection), UTF-8 validation, the close
// handshake and permessage-deflate are wsext's own and pass the
// conformance suite in this repository. Off Linux there is no poller and
// every connection runs on a goroutine of its own.
//
// # Layout
//
// One concept a file: api.go, server.go and conn.go are the API and a
// connection's state; upgrade.go the handshake; input.go the one path of
// incoming bytes into reader.go, the frame codec (frame.go, utf8.go,
// compress.go), which knows no connection; queue.go the outgoing queue of
// frames, shared or owned; transport.go the polled and stream transports
// behind one interface, with poll_linux.go the polled one's system calls
// on the event loops of internal/poller; each.go Each; pubsub.go and
// sink.go pub/sub's channel table, with engine.go the interfaces of the
// engines; envelope.go positions and the JSON envelope; recover.go
// recovery through an engine that keeps the history; presence.go who
// subscribes.
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
//
// With Options.HistorySize, every published message gets a Position (an
// offset per channel and the channel's epoch) and a subscriber may start
// from one (SubscribeOptions.Since): it gets what it missed, then the live
// messages, with no gap and no duplicate. Without an Engine the Server
// keeps the history; a HistoryEngine keeps it for every process it serves
// (wsd's master, Redis Streams) and numbers every publish, so that all
// subscribers of a channel see one order. Presence (Server.Presence,
// SubscribeOptions.Presence) lists who subscribes, across processes with a
// PresenceEngine. The contract suite every engine passes is package
// pubsub/enginetest.
package wsext
