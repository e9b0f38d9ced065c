// Package cluster is the pub/sub engine between the worker processes of
// one wsd master: a publish in one worker reaches the subscribers in all of
// them.
//
// The master runs a Hub and each worker an Engine, a wsext.Engine (and a
// wsext.HistoryEngine and wsext.PresenceEngine), with one stream
// connection between them. wsd's master makes that connection a
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
// With history (Options.HistorySize), the Hub keeps each channel's last
// messages, shared by all the workers. A publish with history
// (Engine.PublishHistory) goes only to the Hub, which numbers it, keeps
// it, acks its position to the publisher and relays it, positioned, to
// every subscribing worker, the publisher included. A worker asks the Hub
// for what a channel's subscriber missed (Engine.History). The Hub keeps
// the channels' presence too: the clients each worker lists in a channel
// (Engine.Join, Engine.Leave), which any worker may read (Engine.Presence).
//
// This package does not import wsext: the master, which imports it, does
// not depend on wsext. The Engine meets wsext's interfaces by its methods.
//
// # Protocol
//
// One stream connection per worker carries length-prefixed frames both
// ways (see frame.go): subscribe, unsubscribe and publish; publish with
// history, its ack and the positioned message; history request and
// answer; join, leave, presence request and answer. The Hub relays a plain
// publish by copying its bytes, with no re-encoding. A request carries an
// id that the worker chooses and the Hub echoes in the answer; the
// Engine's one reading goroutine hands each answer to the caller waiting
// for it, which gives up after Options.RequestTimeout. A history answer is
// a header frame and one frame per message, so that a long history needs
// no frame beyond a message's size; a presence answer is frames of about
// 64 KiB of entries.
//
// # Guarantees
//
// Delivery is at most once. The messages one worker publishes on one
// channel reach every other worker in publish order: a worker writes its
// frames in order on its single connection, the Hub reads each connection
// on one goroutine and queues the frames for each destination in that
// order, and each destination is written, and read, in order.
//
// Messages with history reach every subscribing worker in offset order,
// whoever published them: the Hub keeps a message and queues it for every
// subscriber under one lock per channel, so that no other message of the
// channel is numbered in between. The publisher's ack is queued before
// its own copy.
//
// Recovery is gapless. A worker subscribes to a channel before it asks for
// the channel's history, on the same connection, and the Hub handles one
// connection's frames in order: when the Hub reads the history, the worker
// is a subscriber already. The Hub reads the history and queues the answer
// under the channel's lock: a message kept before is in the answer (and
// may also come before it, relayed: the Server drops the duplicate by
// offset), and one kept after is relayed to the worker after the answer.
// Every message is in the answer or delivered after it. The Engine's
// reading goroutine never waits for a caller, so such a message may reach
// StartHistory's deliver while History is still calling its fn, but never
// before History has its whole answer.
//
// Presence is the Hub's: the union of what the live workers listed. When a
// worker's connection ends (the worker exited, was killed or crashed), the
// Hub drops every entry it listed, as it drops its subscriptions. One
// worker lists at most 2²⁰ entries; the Hub drops (and logs) joins beyond.
//
// A worker that does not read its connection is not allowed to hold up the
// others: once Options.MaxQueue bytes wait for it, the Hub drops further
// messages, acks and answers for it and logs how many; a request whose
// answer was dropped fails with ErrTimeout. An answer is queued whole or
// not at all, so that a worker never takes part of a history for all of
// it. The subscribers inside a worker are bounded the same way by wsext's
// MaxBackpressure.
//
// # Failures
//
// When the connection to the Hub breaks (the master re-executes itself for
// a binary upgrade, say), the Engine reconnects with backoff, from 10ms up
// to a second, and resubscribes every channel it holds and lists again
// every presence entry it holds. Until then Publish and PublishHistory
// return ErrDisconnected: the message reached at most the publisher's own
// process; History and Presence fail with it too, as do the requests still
// waiting when the connection broke. A worker that dies ends its
// connection, and the Hub drops it with its subscriptions and presence
// entries; its replacement gets a connection of its own and subscribes
// and joins afresh as its clients connect.
//
// The history lives in the master's memory only. A master that re-executes
// itself for a binary upgrade starts a new Hub with no history, whose
// channels begin new epochs: a subscriber that comes back with a position
// of the old master's is told that it cannot be recovered, never handed
// the new epoch's messages as if they followed its own. The history is
// sized when the Hub is made: a reload of the master's configuration does
// not change it.
package cluster
