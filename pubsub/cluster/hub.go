package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsd-server/wsd/internal/history"
)

// Options tune a Hub or an Engine; the zero value is ready to use.
type Options struct {
	// Logger receives connection changes and dropped messages; nil means
	// slog.Default().
	Logger *slog.Logger
	// MaxQueue is the most bytes that may wait to be written to one relay
	// connection. The Hub drops what a worker is too slow to take (and
	// logs it); an Engine's Publish fails with ErrQueueFull. 0 means
	// 64 MiB.
	MaxQueue int

	// HistorySize is how many messages the Hub keeps of each channel for
	// PublishHistory and History; 0 keeps none: every message then has
	// the position (0, ""), and History recovers only from (0, ""), with
	// nothing. HistoryTTL bounds their age (0: no bound) and
	// HistoryMaxBytes the history of all channels together (0 means
	// DefaultHistoryMaxBytes). An Engine ignores these.
	HistorySize     int
	HistoryTTL      time.Duration
	HistoryMaxBytes int64

	// RequestTimeout bounds how long an Engine's PublishHistory, History
	// and Presence wait for the Hub's answer; 0 means 5 seconds. A Hub
	// ignores it.
	RequestTimeout time.Duration
}

// DefaultHistoryMaxBytes is the Hub's history bound with
// Options.HistoryMaxBytes 0, wsd's master's.
const DefaultHistoryMaxBytes = 64 << 20

// maxPeerJoins bounds the presence entries one worker may hold in the Hub:
// a million clients listed, a few hundred MiB at most. Joins beyond it are
// dropped, and logged. A variable for the tests.
var maxPeerJoins = 1 << 20

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 64 << 20
	}
	if o.HistoryMaxBytes <= 0 {
		o.HistoryMaxBytes = DefaultHistoryMaxBytes
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
}

// Hub is the master's side: it serves the workers' connections, one per
// worker, and relays every publish to the other workers that subscribe to
// its channel. It keeps the channels' history (Options.HistorySize) and
// presence for the workers' HistoryEngine and PresenceEngine calls. The
// connections come from Attach (wsd's master hands it one end of a
// socketpair per worker) or from a listener (Listen, Serve).
//
// What the Hub queues for a worker is bounded by Options.MaxQueue: a
// message, an ack or an answer that does not fit is dropped (and counted
// in Dropped), and the worker's request for it times out. An answer goes
// in whole, whatever its size, while no more than MaxQueue bytes wait.
type Hub struct {
	opts Options
	ln   net.Listener // nil for a Hub made by NewHub

	mu     sync.RWMutex
	subs   map[string]map[*peer]struct{}
	peers  map[*peer]struct{}
	closed bool
	wg     sync.WaitGroup

	history *history.Store // nil with Options.HistorySize 0
	// ordered serialises, per channel (by hash), the publishes with
	// history and the history answers, each from the Store to the
	// queues: every worker then gets a channel's messages in offset
	// order, and each message is in a history answer or queued after it.
	ordered [64]sync.Mutex
	seed    maphash.Seed

	presMu   sync.Mutex
	presence map[string]map[string]listing // channel → client → listing

	dropped atomic.Uint64
}

// listing is a client's presence entry: the worker that listed it, and
// its info.
type listing struct {
	peer *peer
	info string
}

// peer is one worker's connection to the Hub.
type peer struct {
	conn     net.Conn
	out      *sender
	channels map[string]struct{} // under Hub.mu
	dropped  rateNote            // messages and answers not queued
	known    names               // channel names of its frames; only serve uses it

	joined    map[string]map[string]struct{} // under Hub.presMu: its listings, channel → clients
	joins     int                            // under Hub.presMu: how many
	joinsLost rateNote                       // joins over maxPeerJoins
}

// rateNote counts events to log, one line a second at most.
type rateNote struct {
	n    atomic.Uint64 // since the last line
	last atomic.Int64  // unix nanoseconds of that line
}

// note counts one event and calls log with the count when a line is due.
func (r *rateNote) note(log func(n uint64)) {
	r.n.Add(1)
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(time.Second) || !r.last.CompareAndSwap(last, now) {
		return
	}
	log(r.n.Swap(0))
}

// Listen makes a Hub on a unix socket at path, readable by this user only,
// replacing a socket left there by a previous process (a master that
// re-executed itself).
func Listen(path string, opts Options) (*Hub, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == os.ModeSocket {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cluster: relay socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cluster: relay socket: %w", err)
	}
	return Serve(ln, opts), nil
}

// Serve makes a Hub that accepts on ln until Close.
func Serve(ln net.Listener, opts Options) *Hub {
	h := NewHub(opts)
	h.ln = ln
	h.wg.Add(1)
	go h.accept()
	return h
}

// NewHub makes a Hub that listens on nothing: it serves the connections
// given to Attach.
func NewHub(opts Options) *Hub {
	opts.setDefaults()
	h := &Hub{
		opts:     opts,
		subs:     make(map[string]map[*peer]struct{}),
		peers:    make(map[*peer]struct{}),
		seed:     maphash.MakeSeed(),
		presence: make(map[string]map[string]listing),
	}
	if opts.HistorySize > 0 {
		h.history = history.New(opts.HistorySize, opts.HistoryTTL, opts.HistoryMaxBytes)
	}
	return h
}

// Addr returns the address the Hub listens on, or nil for a Hub made by
// NewHub.
func (h *Hub) Addr() net.Addr {
	if h.ln == nil {
		return nil
	}
	return h.ln.Addr()
}

// Dropped returns the number of messages, acks and answers the Hub did not
// queue for a worker because that worker's queue was full.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Close stops accepting, closes every worker's connection (the workers'
// Engines reconnect, to the next Hub) and waits for the Hub's goroutines.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	for p := range h.peers {
		p.out.close()
		p.conn.Close()
	}
	h.mu.Unlock()
	var err error
	if h.ln != nil {
		err = h.ln.Close()
	}
	h.wg.Wait()
	return err
}

// ErrHubClosed is returned by Attach once the Hub is closed.
var ErrHubClosed = errors.New("cluster: the pub/sub hub is closed")

// Attach serves conn, a connection to one worker's Engine, until it ends:
// the worker closed it or died, sent a malformed frame, or the Hub was
// closed. The Hub then forgets the worker's subscriptions and presence
// entries, and closes conn.
// Attach returns at once; after Close it closes conn and returns
// ErrHubClosed.
func (h *Hub) Attach(conn net.Conn) error {
	p := &peer{
		conn:     conn,
		out:      newSender(conn, h.opts.MaxQueue),
		channels: make(map[string]struct{}),
		joined:   make(map[string]map[string]struct{}),
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.Close()
		return ErrHubClosed
	}
	h.peers[p] = struct{}{}
	h.wg.Add(2)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		p.out.run()
	}()
	go func() {
		defer h.wg.Done()
		h.serve(p)
	}()
	return nil
}

func (h *Hub) accept() {
	defer h.wg.Done()
	var delay time.Duration
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, most likely: wait rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			h.opts.Logger.Error("pub/sub relay: accept", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if h.Attach(conn) != nil {
			return
		}
	}
}

// serve reads one worker's frames until its connection ends.
func (h *Hub) serve(p *peer) {
	log := h.opts.Logger
	log.Debug("pub/sub relay: worker connected")
	br := bufio.NewReaderSize(p.conn, 64<<10)
	var buf []byte
	var err error
	for {
		var raw []byte
		var f frame
		raw, f, err = readFrame(br, buf)
		if err != nil {
			break
		}
		buf = raw[:0]
		switch f.op {
		case opSubscribe:
			h.mu.Lock()
			ch := string(f.channel)
			if _, ok := p.channels[ch]; !ok {
				p.channels[ch] = struct{}{}
				set := h.subs[ch]
				if set == nil {
					set = make(map[*peer]struct{})
					h.subs[ch] = set
				}
				set[p] = struct{}{}
			}
			h.mu.Unlock()
		case opUnsubscribe:
			h.mu.Lock()
			h.unsubscribeLocked(p, string(f.channel))
			h.mu.Unlock()
		case opPublish:
			h.relay(p, f.channel, raw)
		case opPublishHistory:
			h.publishHistory(p, f)
		case opHistoryRequest:
			h.answerHistory(p, f)
		case opJoin:
			h.join(p, string(f.channel), string(f.client), string(f.data))
		case opLeave:
			h.presMu.Lock()
			if l, ok := h.presence[string(f.channel)][string(f.client)]; ok && l.peer == p {
				h.unlistLocked(p, string(f.channel), string(f.client))
			}
			h.presMu.Unlock()
		case opPresenceRequest:
			h.answerPresence(p, f)
		default:
			err = fmt.Errorf("%w: %q frame from a worker", errFrame, f.op)
		}
		if err != nil {
			break
		}
		// A buffer grown for one huge message is not kept for good.
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
	h.mu.Lock()
	for ch := range p.channels {
		h.unsubscribeLocked(p, ch)
	}
	delete(h.peers, p)
	closed := h.closed
	h.mu.Unlock()
	// A worker that is gone, killed or not, is no longer anyone's
	// presence.
	h.presMu.Lock()
	for ch, clients := range p.joined {
		for client := range clients {
			h.unlistLocked(p, ch, client)
		}
	}
	h.presMu.Unlock()
	p.out.close()
	p.conn.Close()
	switch {
	case closed || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET):
		// A worker that exits, or is killed, ends its connection; a reset
		// only means it left with bytes of ours unread.
		log.Debug("pub/sub relay: worker disconnected")
	default:
		log.Warn("pub/sub relay: dropping a worker's connection", "err", err)
	}
}

func (h *Hub) unsubscribeLocked(p *peer, ch string) {
	if _, ok := p.channels[ch]; !ok {
		return
	}
	delete(p.channels, ch)
	set := h.subs[ch]
	delete(set, p)
	if len(set) == 0 {
		delete(h.subs, ch)
	}
}

// relay queues a publish frame, as read, for every other subscriber.
func (h *Hub) relay(from *peer, channel []byte, raw []byte) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for p := range h.subs[string(channel)] {
		if p == from {
			continue
		}
		h.queue(p, p.out.queue(len(raw), func(b []byte) []byte { return append(b, raw...) }))
	}
}

// queue counts, and logs, a frame that could not be queued for p
// because p's queue was full; err is what the sender said.
func (h *Hub) queue(p *peer, err error) {
	if !errors.Is(err, ErrQueueFull) {
		return // queued, or p's connection is gone: serve cleans up
	}
	h.dropped.Add(1)
	p.dropped.note(func(n uint64) {
		h.opts.Logger.Warn("pub/sub relay: a worker is not keeping up; messages to it were dropped",
			"dropped", n, "queue_limit", h.opts.MaxQueue)
	})
}

// order locks channel's ordering lock; the caller unlocks it.
func (h *Hub) order(channel []byte) *sync.Mutex {
	mu := &h.ordered[maphash.Bytes(h.seed, channel)%uint64(len(h.ordered))]
	mu.Lock()
	return mu
}

// publishHistory keeps a message in its channel's history, acks it to its
// publisher, and queues it, positioned, for every subscriber, the
// publisher included. The ack goes first, so that the publisher's Engine
// has the message's position before its own copy.
func (h *Hub) publishHistory(from *peer, f frame) {
	channel := from.known.get(f.channel)
	defer h.order(f.channel).Unlock()
	var pos history.Position
	if h.history != nil {
		pos = h.history.Add(channel, f.data, f.text)
	}
	if f.id != 0 { // 0: ForwardHistory, which waits for no answer
		h.queue(from, from.out.queue(lenSize+ackHeader+len(pos.Epoch), func(b []byte) []byte {
			return appendAck(b, f.id, pos.Offset, pos.Epoch)
		}))
	}
	size := positionedSize(pos.Epoch, channel, f.data)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for p := range h.subs[channel] {
		var origin uint64
		if p == from {
			origin = f.origin // which only its publisher understands
		}
		h.queue(p, p.out.queue(size, func(b []byte) []byte {
			return appendPositioned(b, pos.Offset, origin, pos.Epoch, channel, f.data, f.text)
		}))
	}
}

// answerHistory queues the answer to a history request. The worker sent
// its subscription to the channel before the request, on the same
// connection, and serve handles a connection's frames in order: the
// worker is already a subscriber. Under the channel's ordering lock, a
// message kept before the Store is read is in the answer, and one kept
// after is queued for the worker after the answer: none is missed.
func (h *Hub) answerHistory(p *peer, f frame) {
	defer h.order(f.channel).Unlock()
	var (
		msgs      []history.Message
		top       history.Position
		recovered bool
	)
	if h.history != nil {
		msgs, top, recovered = h.history.Since(string(f.channel), history.Position{Offset: f.offset, Epoch: string(f.epoch)})
	} else {
		recovered = f.offset == 0 && len(f.epoch) == 0
	}
	size := lenSize + historyAnswerHeader + len(top.Epoch)
	for _, m := range msgs {
		size += historyEntrySize(m.Data)
	}
	h.queue(p, p.out.queueAnswer(size, func(b []byte) []byte {
		b = appendHistoryAnswer(b, f.id, top.Offset, top.Epoch, recovered, uint32(len(msgs)))
		for _, m := range msgs {
			b = appendHistoryEntry(b, f.id, m.Offset, m.Data, m.IsText)
		}
		return b
	}))
}

// join lists client in channel for p, taking the listing over from
// another worker that had it (a client id is unique; a stale listing is
// not kept).
func (h *Hub) join(p *peer, channel, client, info string) {
	h.presMu.Lock()
	defer h.presMu.Unlock()
	l, listed := h.presence[channel][client]
	if listed && l.peer == p {
		h.presence[channel][client] = listing{p, info}
		return
	}
	if p.joins >= maxPeerJoins {
		p.joinsLost.note(func(n uint64) {
			h.opts.Logger.Warn("pub/sub relay: a worker lists too many presence entries; joins dropped",
				"dropped", n, "limit", maxPeerJoins)
		})
		return
	}
	if listed {
		h.unlistLocked(l.peer, channel, client)
	}
	clients := h.presence[channel]
	if clients == nil {
		clients = make(map[string]listing)
		h.presence[channel] = clients
	}
	clients[client] = listing{p, info}
	mine := p.joined[channel]
	if mine == nil {
		mine = make(map[string]struct{})
		p.joined[channel] = mine
	}
	mine[client] = struct{}{}
	p.joins++
}

// unlistLocked removes client's listing in channel, which p holds.
func (h *Hub) unlistLocked(p *peer, channel, client string) {
	clients := h.presence[channel]
	delete(clients, client)
	if len(clients) == 0 {
		delete(h.presence, channel)
	}
	mine := p.joined[channel]
	if _, ok := mine[client]; ok {
		p.joins--
		delete(mine, client)
		if len(mine) == 0 {
			delete(p.joined, channel)
		}
	}
}

// answerPresence queues the answer to a presence request: the channel's
// listings, from every worker.
func (h *Hub) answerPresence(p *peer, f frame) {
	h.presMu.Lock()
	clients := h.presence[string(f.channel)]
	answer := appendPresenceAnswer(nil, f.id, func(yield func(string, string) bool) {
		for client, l := range clients {
			if !yield(client, l.info) {
				return
			}
		}
	})
	h.presMu.Unlock()
	h.queue(p, p.out.queueAnswer(len(answer), func(b []byte) []byte { return append(b, answer...) }))
}
