package wsext

// Engine carries published messages between processes (and hosts); the
// packages under pubsub/ in this module provide one for the workers of a
// wsd master and one for Redis. With no Engine (Options.Engine nil),
// messages stay in the process: the in-process engine.
//
// A Server delivers a publish to its own subscribers itself, at once; the
// engine only forwards it to the other processes and hands their publishes
// back through the deliver function given to Start. An engine must
// therefore never deliver a process's own publishes back to it.
//
// An engine serves one Server. Its contract:
//
//   - Delivery is at most once: a message that cannot be forwarded is lost,
//     and Publish says so with an error when it knows.
//   - Order: the messages one process publishes on one channel, one after
//     the other, reach every other process in that order.
//   - Subscribe and Unsubscribe are idempotent and keep the engine's
//     subscriptions across its own reconnections; a subscription takes
//     effect once the engine's peer (the master, Redis) has seen it.
//   - Publish, Subscribe and Unsubscribe are called from any goroutine and
//     must not keep data after they return. Subscribe and Unsubscribe
//     should not wait for the network: the Server calls them, one at a
//     time, as connections open and close.
type Engine interface {
	// Start begins receiving; deliver is called for every message another
	// process published on a channel this process subscribes to. deliver
	// does not keep data after it returns; calls for one channel must not
	// overlap if they are to stay in order. The Server calls Start once,
	// before its first Publish or Subscribe reaches the engine.
	Start(deliver func(channel string, data []byte, isText bool)) error
	// Publish forwards a message to the other processes.
	Publish(channel string, data []byte, isText bool) error
	// Subscribe is called when this process gains its first subscriber on
	// channel, Unsubscribe when it loses its last.
	Subscribe(channel string) error
	Unsubscribe(channel string) error
	// Close stops the engine. The Server never calls it: the engine's
	// owner does, after the Server's Shutdown.
	Close() error
}

// HistoryEngine is an Engine that keeps each channel's history itself,
// shared by every process (and host) it serves: wsd's cluster engine keeps
// it in the master, the Redis engine in Redis Streams. A Server with one
// keeps no history of its own. Its publishes go out only through the
// engine, which numbers them and hands them back to every subscribing
// process, the publisher's own included, so that every subscriber of a
// channel sees one order, the order of the offsets.
//
// On top of Engine's contract:
//
//   - Offsets grow by one from 1 per channel and epoch; a channel whose
//     history is lost (expired, evicted, its keeper restarted) gets a new
//     epoch, never an old one again.
//   - Delivery through StartHistory's deliver is in offset order per
//     channel, never overlapping for one channel.
//   - History is consistent with delivery: once Subscribe(channel) has
//     returned, every message is either in History's answer or delivered
//     after History returns (or both; the Server drops the duplicate by
//     offset). An engine whose subscriptions take effect later waits for
//     that inside History.
//   - PublishHistory, History, Join, Leave and Presence are called from
//     any goroutine; History and Presence may wait for the network, and
//     should give up after a few seconds with an error.
type HistoryEngine interface {
	Engine
	// StartHistory is called after Start, once. deliver is called for every
	// message published with PublishHistory, by any process, on a channel
	// this process subscribes to, its own publishes included, with the
	// message's offset and epoch. origin is the value this process gave
	// PublishHistory for the message, and 0 for another process's. deliver
	// does not keep data after it returns.
	StartHistory(deliver func(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool)) error
	// PublishHistory appends a message to channel's history and forwards
	// it to every subscribing process, this one included; it returns the
	// message's offset and the channel's epoch. An error means the message
	// may or may not have been kept and forwarded. origin is opaque to the
	// engine: it comes back with the message to this process only.
	PublishHistory(channel string, data []byte, isText bool, origin uint64) (offset uint64, epoch string, err error)
	// History calls fn, oldest first, with the kept messages of channel
	// published after the one at (offset, epoch), and returns the
	// channel's top (the offset of its last message, and its epoch) and
	// whether the messages given to fn are exactly all of those: false,
	// and fn not called, when epoch is not the channel's, offset is above
	// the top, or a message after offset is no longer kept. offset 0 with
	// epoch "" asks for every kept message, recovered while the channel's
	// first message is still kept. A channel with no history has the top
	// (0, ""). fn does not keep data after it returns.
	History(channel string, offset uint64, epoch string, fn func(offset uint64, data []byte, isText bool)) (top uint64, topEpoch string, recovered bool, err error)
}

// HistoryForwarder is what a HistoryEngine may add so that publishing does
// not wait for a round trip: ForwardHistory publishes like PublishHistory
// without the position, keeping the order of the engine's other publishes.
// It returns the failures it knows at once (disconnected, queue full);
// later ones go unreported, as with Engine.Publish. Server.Publish and
// Conn.Publish use it when the engine has it, so that a callback that
// publishes does not hold its event loop for the round trip;
// PublishPosition, which returns the position, cannot.
type HistoryForwarder interface {
	ForwardHistory(channel string, data []byte, isText bool, origin uint64) error
}

// PresenceEngine is an Engine that also keeps who subscribes to each
// channel, across every process (and host) it serves. The Server calls
// Join when a subscription that asks to be listed begins and Leave when it
// ends; Join and Leave must not wait for the network, as Subscribe. The
// entries of a process that ends without Leave (killed, say) must go too:
// the cluster engine's master drops them with the worker's connection; the
// Redis engine lets them expire unless the live process refreshes them.
type PresenceEngine interface {
	Engine
	// Join lists client, an id unique across processes, as a subscriber
	// of channel, with info (wsext passes a small JSON object). Joining
	// again replaces info.
	Join(channel, client, info string) error
	// Leave ends client's listing in channel; it is a no-op for a client
	// not listed.
	Leave(channel, client string) error
	// Presence returns the info of every client listed in channel, in
	// every process, by client.
	Presence(channel string) (map[string]string, error)
}
