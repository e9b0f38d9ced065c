package history

import (
	"container/list"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Position is a place in a channel's stream of messages: the offset of a
// message (offsets only grow, from 1) and the epoch of the stream it
// belongs to. A stream whose history was lost (evicted, expired, or kept
// by a process that restarted) starts a new epoch, so that a subscriber
// coming back with an old position learns that it cannot be served
// exactly rather than silently missing messages.
type Position struct {
	Offset uint64
	Epoch  string
}

// Message is a message kept in a channel's history.
type Message struct {
	Offset uint64
	Data   []byte
	IsText bool
}

// Store keeps the last messages of each channel, bounded per
// channel (size messages, ttl age) and in all (maxBytes of payload, then
// whole channels are evicted, least recently published first: their
// epoch changes, which is how their subscribers learn of it). It is the
// history of wsext's in-process pub/sub and of the cluster engine's hub.
// It is safe for concurrent use.
type Store struct {
	size     int
	ttl      time.Duration
	maxBytes int64
	now      func() time.Time

	mu    sync.Mutex
	chans map[string]*list.Element // of *stream, most recently published at the front
	order list.List
	bytes int64
}

type stream struct {
	channel string
	epoch   string
	top     uint64
	ring    []historyEntry // ring[(first+i)%len] for i < n, oldest first
	first   int
	n       int
}

type historyEntry struct {
	Message
	at time.Time
}

// New returns a Store keeping up to size messages per channel, each for at
// most ttl (0: no age limit), and maxBytes in all (payloads plus a fixed
// cost per message).
func New(size int, ttl time.Duration, maxBytes int64) *Store {
	h := &Store{size: size, ttl: ttl, maxBytes: maxBytes, now: time.Now, chans: make(map[string]*list.Element)}
	h.order.Init()
	return h
}

// newEpoch names a new stream generation: random, so that no two processes
// or restarts share one.
func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Add appends a message (copied) to channel's history and returns its
// position.
func (h *Store) Add(channel string, data []byte, isText bool) Position {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.streamLocked(channel, true)
	h.expireLocked(st, now)
	if st.n == h.size {
		h.dropOldestLocked(st)
	}
	if st.n == len(st.ring) {
		st.grow(h.size)
	}
	st.top++
	i := (st.first + st.n) % len(st.ring)
	st.ring[i] = historyEntry{Message{st.top, append([]byte(nil), data...), isText}, now}
	st.n++
	h.bytes += entryCost(len(data))
	for h.bytes > h.maxBytes && h.order.Len() > 1 {
		// Over the total bound: evict the least recently published
		// channel whole, never the one just written.
		h.evictLocked(h.order.Back().Value.(*stream))
	}
	for h.bytes > h.maxBytes && st.n > 1 {
		h.dropOldestLocked(st)
	}
	return Position{st.top, st.epoch}
}

// Top returns channel's current position: the offset of its last message
// and its epoch, or the zero Position for a channel with no history. It
// never creates anything: any client may ask about any name.
func (h *Store) Top(channel string) Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.chans[channel]; ok {
		st := el.Value.(*stream)
		return Position{st.top, st.epoch}
	}
	return Position{}
}

// Since returns the messages of channel after pos, oldest first, and the
// channel's top position. recovered is false when they cannot be exactly
// what was missed: another epoch, an offset beyond the top, or messages
// after pos that are no longer kept. Then msgs is nil. The zero Position
// asks for the whole stream, which is recovered while its first message is
// still kept.
func (h *Store) Since(channel string, pos Position) (msgs []Message, top Position, recovered bool) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	el, ok := h.chans[channel]
	if !ok {
		return nil, Position{}, pos.Offset == 0
	}
	st := el.Value.(*stream)
	h.expireLocked(st, now)
	top = Position{st.top, st.epoch}
	if pos.Epoch == "" && pos.Offset == 0 {
		pos.Epoch = st.epoch
	}
	if pos.Epoch != st.epoch || pos.Offset > st.top {
		return nil, top, false
	}
	oldest := st.top - uint64(st.n) + 1 // the first offset still kept
	if pos.Offset+1 < oldest {
		return nil, top, false
	}
	for i := int(pos.Offset + 1 - oldest); i < st.n; i++ {
		e := st.ring[(st.first+i)%len(st.ring)]
		msgs = append(msgs, e.Message)
	}
	return msgs, top, true
}

// streamLocked returns channel's stream, made with a new epoch when there
// is none and create is set.
func (h *Store) streamLocked(channel string, create bool) *stream {
	if el, ok := h.chans[channel]; ok {
		h.order.MoveToFront(el)
		return el.Value.(*stream)
	}
	if !create {
		return nil
	}
	st := &stream{channel: channel, epoch: newEpoch()}
	h.chans[channel] = h.order.PushFront(st)
	return st
}

// entryOverhead is what a kept message costs beyond its payload (its
// entry, slice header and allocation), counted against maxBytes.
const entryOverhead = 64

func entryCost(n int) int64 { return int64(n + entryOverhead) }

// grow makes room for one more message, up to size, keeping the order.
func (st *stream) grow(size int) {
	bigger := make([]historyEntry, 0, min(max(2*len(st.ring), 8), size))
	for i := range st.n {
		bigger = append(bigger, st.ring[(st.first+i)%len(st.ring)])
	}
	st.ring, st.first = bigger[:cap(bigger)], 0
}

func (h *Store) dropOldestLocked(st *stream) {
	e := &st.ring[st.first]
	h.bytes -= entryCost(len(e.Data))
	*e = historyEntry{}
	st.first = (st.first + 1) % len(st.ring)
	st.n--
}

// expireLocked drops st's messages older than the TTL.
func (h *Store) expireLocked(st *stream, now time.Time) {
	if h.ttl <= 0 {
		return
	}
	for st.n > 0 && now.Sub(st.ring[st.first].at) > h.ttl {
		h.dropOldestLocked(st)
	}
}

// evictLocked forgets a channel's stream: its next message starts a new
// epoch.
func (h *Store) evictLocked(st *stream) {
	for st.n > 0 {
		h.dropOldestLocked(st)
	}
	h.order.Remove(h.chans[st.channel])
	delete(h.chans, st.channel)
}
