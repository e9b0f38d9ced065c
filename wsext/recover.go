package wsext

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRecoveryOverflow is returned by SubscribeWith and SubscribeFuncWith
// when more live messages arrived while the engine's history was being read
// than MaxBackpressure holds: the subscription cannot go on without a gap.
// SubscribeWith closes the connection with CloseTryAgainLater, so that the
// client comes back from the last offset it saw.
var ErrRecoveryOverflow = errors.New("wsext: too many messages arrived during recovery")

// ErrRecoveryBusy is returned by SubscribeWith and SubscribeFuncWith when
// the engine's history could not be read within recoveryWait because
// maxRecoveries other subscribers were being recovered: a reconnection
// storm. The subscriber should come back a little later.
var ErrRecoveryBusy = errors.New("wsext: too many subscribers being recovered at once")

// maxRecoveries bounds the histories read from an engine at once, per
// Server, and recoveryWait how long a subscriber waits for its turn.
const (
	maxRecoveries = 8
	recoveryWait  = 5 * time.Second
)

// subscriber is one connection's subscription to one channel.
type subscriber struct {
	envelope bool
	listing  listing // its place in the channel's presence
	// held is set while the subscription is being recovered from a
	// HistoryEngine: live messages wait in it, in order, until the history
	// has been written.
	held atomic.Pointer[pending]
}

// pending holds the live messages of a subscription while its history is
// read from the engine, a round trip during which the engine already
// delivers; they are written after the history, less those it held.
type pending struct {
	mu       sync.Mutex
	max      int // bytes held at most
	msgs     []heldMessage
	bytes    int
	overflow bool
	done     bool // the history is written: deliver writes directly
}

type heldMessage struct {
	pos    Position
	data   []byte
	isText bool
}

// deliver holds a message, or, once the recovery is over, writes it with
// write under the lock, so that it cannot overtake the held ones.
func (pd *pending) deliver(pos Position, data []byte, isText bool, write func()) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	switch {
	case pd.done:
		write()
	case pd.overflow:
	case pd.bytes+len(data) > pd.max:
		pd.overflow, pd.msgs, pd.bytes = true, nil, 0
	default:
		pd.msgs = append(pd.msgs, heldMessage{pos, bytes.Clone(data), isText})
		pd.bytes += len(data)
	}
}

// abandon ends a recovery that failed: the subscription takes live
// messages directly from now on.
func (pd *pending) abandon(slot *atomic.Pointer[pending]) {
	pd.mu.Lock()
	pd.done, pd.msgs = true, nil
	slot.Store(nil)
	pd.mu.Unlock()
}

// recoverFromEngine finishes a subscription through a HistoryEngine, once
// the engine subscribes to channel: it reads the history after since (or
// only the top, when since is nil), calls status with the outcome, emits
// the missed messages, then the live ones held meanwhile that are newer
// than the history's top, and lets the live stream through. The engine's
// contract (HistoryEngine) makes that exactly every message once.
//
// At most maxRecoveries histories are read at once per Server: a storm of
// reconnections queues here (for recoveryWait at most, then
// ErrRecoveryBusy) rather than holding a history each in memory, in this
// process and in the engine's keeper. A subscriber gone meanwhile (gone
// reports it) is not read for.
func (s *Server) recoverFromEngine(channel string, since *Position, pd *pending, slot *atomic.Pointer[pending],
	gone func() bool, status func(Recovery), emit func(Position, []byte, bool)) (Recovery, error) {
	t := time.NewTimer(recoveryWait)
	select {
	case s.readingHistory <- struct{}{}:
		t.Stop()
	case <-t.C:
		pd.abandon(slot)
		return Recovery{}, fmt.Errorf("%w: %d subscribers were being recovered for %v", ErrRecoveryBusy, maxRecoveries, recoveryWait)
	}
	defer func() { <-s.readingHistory }()
	if gone() {
		pd.abandon(slot)
		return Recovery{}, ErrClosed
	}
	// An offset above any top asks for the top alone.
	off, ep := uint64(math.MaxUint64), ""
	if since != nil {
		off, ep = since.Offset, since.Epoch
	}
	var msgs []heldMessage
	top, topEpoch, ok, err := s.engineHistory(channel, off, ep, func(o uint64, data []byte, isText bool) {
		msgs = append(msgs, heldMessage{Position{Offset: o}, bytes.Clone(data), isText})
	})
	if err != nil {
		pd.abandon(slot)
		return Recovery{}, fmt.Errorf("wsext: reading the history of %q: %w", channel, err)
	}
	if !ok || !s.replayFits(len(msgs), func(i int) int { return len(msgs[i].data) }) {
		msgs, ok = nil, false
	}
	rec := Recovery{Recovered: ok || since == nil, Replayed: len(msgs), Top: Position{top, topEpoch}}
	pd.mu.Lock()
	defer pd.mu.Unlock()
	status(rec)
	for _, m := range msgs {
		emit(Position{m.pos.Offset, topEpoch}, m.data, m.isText)
	}
	for _, m := range pd.msgs {
		if m.pos.Epoch == topEpoch && m.pos.Offset <= top {
			continue // in the history, or older than the top asked for
		}
		emit(m.pos, m.data, m.isText)
	}
	overflow := pd.overflow
	pd.done, pd.msgs = true, nil
	slot.Store(nil)
	if overflow {
		return rec, ErrRecoveryOverflow
	}
	return rec, nil
}

// replayFits reports whether n messages, of the sizes size gives, may be
// replayed at once: up to half of MaxBackpressure. A subscriber further
// behind is told it is not recovered (and reloads its state) rather than
// sent more than its queue may hold, which would close it, again at every
// attempt.
func (s *Server) replayFits(n int, size func(i int) int) bool {
	total := 0
	for i := range n {
		total += size(i) + maxHeaderLen
		if total > s.opts.MaxBackpressure/2 {
			return false
		}
	}
	return true
}

// publishThroughHistory publishes through the HistoryEngine, which numbers
// the message and delivers it to every subscribing process, this one
// included: nothing is written here. With wait unset, an engine that is a
// HistoryForwarder is not waited for, and the zero Position is returned.
func (s *Server) publishThroughHistory(except *Conn, channel string, data []byte, isText, wait bool) (Position, error) {
	if _, err := s.pubsub.engine(); err != nil {
		return Position{}, err
	}
	var origin uint64
	if except != nil {
		origin = except.uuid
	}
	var (
		pos Position
		err error
	)
	if f, ok := s.histEng.(HistoryForwarder); ok && !wait {
		s.engineGuard("ForwardHistory", &err, func() { err = f.ForwardHistory(channel, data, isText, origin) })
	} else {
		s.engineGuard("PublishHistory", &err, func() {
			pos.Offset, pos.Epoch, err = s.histEng.PublishHistory(channel, data, isText, origin)
		})
	}
	if err != nil {
		return Position{}, fmt.Errorf("wsext: publishing on %q through the engine: %w", channel, err)
	}
	return pos, nil
}

// engineHistory calls the engine's History under engineGuard.
func (s *Server) engineHistory(channel string, off uint64, ep string, fn func(uint64, []byte, bool)) (top uint64, topEpoch string, ok bool, err error) {
	if _, err = s.pubsub.engine(); err != nil {
		return
	}
	s.engineGuard("History", &err, func() {
		top, topEpoch, ok, err = s.histEng.History(channel, off, ep, fn)
	})
	return
}

// engineGuard runs an engine call. An engine is code from outside this
// package: a panic in it becomes an error for this one call (and a
// rate-limited log line), never the end of the process.
func (s *Server) engineGuard(method string, err *error, call func()) {
	defer func() {
		if r := recover(); r != nil {
			s.stats.panics.Add(1)
			s.logs.Error("engine panic", "wsext: panic in the pub/sub engine", "method", method, "panic", r, "stack", string(debug.Stack()))
			*err = fmt.Errorf("wsext: the pub/sub engine panicked in %s: %v", method, r)
		}
	}()
	call()
}

// deliverPositioned writes a message numbered by the HistoryEngine to this
// process's subscribers of channel; it is the deliver function given to
// StartHistory. The connection whose uuid is origin published it, and does
// not get it back.
func (s *Server) deliverPositioned(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool) {
	s.deliver(nil, origin, channel, Position{offset, epoch}, data, isText, false)
}

// heldTarget is a connection whose subscription is being recovered.
type heldTarget struct {
	c   *Conn
	sub *subscriber
}

// deliver holds a message for the recovery, or writes it if the recovery
// ended meanwhile.
func (h heldTarget) deliver(channel string, pos Position, data []byte, isText bool) {
	env := h.sub.envelope
	write := func() { h.c.writePositioned(channel, pos, data, isText, env) }
	if pd := h.sub.held.Load(); pd != nil {
		pd.deliver(pos, data, isText, write)
	} else {
		write()
	}
}
