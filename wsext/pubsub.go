package wsext

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/wsd-server/wsd/internal/history"
)

// pubsub is a Server's channel table: which connections of this process
// subscribe to which channel, and which channels the engine subscribes.
type pubsub struct {
	srv      *Server
	mu       sync.RWMutex
	channels map[string]map[*Conn]*subscriber
	// funcs holds the Subscriptions of SubscribeFunc (sink.go), by channel.
	funcs map[string]map[*Subscription]struct{}
	// remote holds the channels the engine subscribes; it is written
	// under both engMu and mu, so either lock is enough to read it.
	remote map[string]bool
	// members is the presence of each channel, by client, when no
	// PresenceEngine keeps it.
	members map[string]map[string]Member

	// engMu serialises the calls that change the engine's subscriptions,
	// so that concurrent first and last subscribers of a channel cannot
	// leave the engine out of step with the table.
	engMu     sync.Mutex
	startOnce sync.Once
	startErr  error
}

func (p *pubsub) init(s *Server) {
	p.srv = s
	p.channels = make(map[string]map[*Conn]*subscriber)
	p.remote = make(map[string]bool)
}

// engine returns the Server's engine, started, or nil when there is none.
func (p *pubsub) engine() (Engine, error) {
	e := p.srv.opts.Engine
	if e == nil {
		return nil, nil
	}
	// Starting on first use rather than in NewServer lets NewServer stay
	// infallible, and nothing can arrive for a process that has neither
	// subscribed nor published.
	p.startOnce.Do(func() {
		if err := p.engineCall(opStart, e, "", nil, false); err != nil {
			p.startErr = fmt.Errorf("wsext: starting the pub/sub engine: %w", err)
		}
	})
	return e, p.startErr
}

// Subscribe subscribes ws to channel on the Default server (or on ws's own
// server, if another). See Server.Subscribe.
func Subscribe(ws *Conn, channel string) error { return ws.srv.Subscribe(ws, channel) }

// Unsubscribe ends ws's subscription to channel. See Server.Unsubscribe.
func Unsubscribe(ws *Conn, channel string) error { return ws.srv.Unsubscribe(ws, channel) }

// Publish publishes a message on the Default server. See Server.Publish.
func Publish(channel string, data []byte, isText bool) error {
	return Default.Publish(channel, data, isText)
}

// Subscribe adds ws to channel's subscribers: every message published on
// channel, in this process or (through the Engine) in another, is written
// to ws. It is a no-op if ws already subscribes. The subscription ends with
// the connection, or with Unsubscribe. Any string is a channel name.
//
// Subscribing is immediate in this process. Through an Engine it takes
// effect once the engine's peer has seen it, a round trip later; messages
// published elsewhere before then do not reach ws. An engine error is
// returned; ws then subscribes in this process only.
func (s *Server) Subscribe(ws *Conn, channel string) error {
	_, err := s.SubscribeWith(ws, channel, SubscribeOptions{})
	return err
}

// SubscribeOptions are the choices of SubscribeWith.
type SubscribeOptions struct {
	// Envelope writes every message of the subscription as a JSON text
	// message that carries its position in the channel's history:
	//
	//	{"offset":42,"epoch":"5f0c2a9d31e4","data":"the text"}
	//	{"offset":43,"epoch":"5f0c2a9d31e4","binary":true,"data":"base64"}
	//
	// Without history (Options.HistorySize 0) offset is 0 and epoch "".
	// The first message of an envelope subscription says where the channel
	// stands and whether what was missed follows, before any other:
	//
	//	{"status":"subscribed","offset":42,"epoch":"5f0c2a9d31e4","recovered":true,"replayed":3}
	Envelope bool
	// Since, when not nil, first writes the messages published on the
	// channel after that position, from its history, then the live ones:
	// no gap and no duplicate. The zero Position asks for all the history.
	Since *Position
	// Presence, when not nil, lists the subscription in the channel's
	// presence (Server.Presence) as this member until it ends. For a
	// connection an empty Client is filled in with an id unique across
	// processes.
	Presence *Member
	// PresenceEvents also writes the channel's join and leave events to the
	// connection, as PresenceEvent JSON text messages (with
	// Options.PresenceEvents).
	PresenceEvents bool
	// OnPresence, for SubscribeFuncWith, is called with the channel's join
	// and leave events (with Options.PresenceEvents). Like the message
	// function it must not block.
	OnPresence func(ev PresenceEvent)
}

// Recovery is what SubscribeWith could replay.
type Recovery struct {
	// Recovered is true when every message after Since was written (or
	// Since was nil). False means some cannot be had: another epoch (the
	// history was lost), or older than what is kept. The application should
	// then reload its state some other way.
	Recovered bool
	// Replayed counts the messages written from the history.
	Replayed int
	// Top is the channel's position when the subscription began.
	Top Position
}

// SubscribeWith subscribes ws to channel like Subscribe, with the envelope
// and recovery of opts. On a Server without history, Since cannot be
// served: ws is subscribed all the same, not recovered, and ErrNoHistory
// is returned. The replayed messages count against
// MaxBackpressure like any others: a history larger than what the peer
// can take at once closes a reader that does not keep up.
func (s *Server) SubscribeWith(ws *Conn, channel string, opts SubscribeOptions) (Recovery, error) {
	rec, err := s.subscribeWith(ws, channel, opts)
	s.stats.countRecovery(opts.Since, rec, err)
	return rec, err
}

func (s *Server) subscribeWith(ws *Conn, channel string, opts SubscribeOptions) (Recovery, error) {
	if ws.srv != s {
		return Recovery{}, fmt.Errorf("wsext: Subscribe: %v belongs to another server", ws)
	}
	if ws.state.Load() == stateClosed || !ws.attached {
		return Recovery{}, ErrClosed
	}
	if opts.PresenceEvents {
		// First, so that the events are on once the status is written:
		// a client that has it misses no join or leave of this process.
		s.subscribeEvents(ws, channel)
	}
	p := &s.pubsub
	p.mu.Lock()
	subs := p.channels[channel]
	if subs == nil {
		subs = make(map[*Conn]*subscriber)
		p.channels[channel] = subs
	}
	// Subscribing again changes the envelope and recovers again, and keeps
	// the subscription's place in the presence.
	sub, already := subs[ws]
	if !already {
		sub = new(subscriber)
		subs[ws] = sub
	}
	sub.envelope = opts.Envelope
	var (
		rec       Recovery
		noHistory error
		pend      *pending
	)
	if s.histEng != nil && (opts.Envelope || opts.Since != nil) {
		// The engine's history is read after the engine subscribes
		// (recoverFromEngine); what arrives meanwhile is held.
		pend = &pending{max: s.opts.MaxBackpressure}
		sub.held.Store(pend)
	} else {
		var msgs []history.Message
		msgs, rec, noHistory = s.recoverLocked(channel, opts.Since)
		if opts.Envelope {
			ws.writeStatus(rec)
		}
		for _, m := range msgs {
			ws.writePositioned(channel, Position{m.Offset, rec.Top.Epoch}, m.Data, m.IsText, opts.Envelope)
		}
	}
	needEngine := s.opts.Engine != nil && !p.remote[channel]
	p.mu.Unlock()
	if !already {
		ws.udataMu.Lock()
		ws.subs = append(ws.subs, channel)
		ws.udataMu.Unlock()
		// A connection that closed meanwhile may have dropped its
		// subscriptions before this one was listed: drop it here.
		if ws.state.Load() == stateClosed {
			s.Unsubscribe(ws, channel)
			return rec, ErrClosed
		}
	}
	if needEngine {
		if err := p.syncEngine(channel); err != nil {
			if pend != nil {
				pend.abandon(&sub.held)
			}
			return rec, err
		}
	}
	if pend != nil {
		var err error
		rec, err = s.recoverFromEngine(channel, opts.Since, pend, &sub.held,
			func() bool { return ws.state.Load() == stateClosed },
			func(r Recovery) {
				if opts.Envelope {
					ws.writeStatus(r)
				}
			},
			func(pos Position, data []byte, isText bool) {
				ws.writePositioned(channel, pos, data, isText, opts.Envelope)
			})
		if errors.Is(err, ErrRecoveryOverflow) {
			// The subscriber would miss what was not held: it comes back
			// from its last offset instead.
			ws.CloseWithCode(CloseTryAgainLater, "too much to recover at once; reconnect")
		}
		if err != nil {
			return rec, err
		}
	}
	if opts.Presence != nil {
		m := *opts.Presence
		if m.Client == "" {
			m.Client = s.clientID(ws.uuid)
		}
		sub.listing.join(s, channel, m)
	}
	return rec, noHistory
}

// recoverLocked reads what a subscriber coming back from since missed, and
// where channel stands. The caller holds the table's lock, which every
// publish holds (shared) from its history entry to its snapshot of
// subscribers: whatever is replayed from here is not delivered live, and
// the other way round. Without history since cannot be served: not
// recovered, and ErrNoHistory.
func (s *Server) recoverLocked(channel string, since *Position) ([]history.Message, Recovery, error) {
	switch {
	case s.hist != nil && since != nil:
		msgs, top, ok := s.hist.Since(channel, history.Position(*since))
		if !s.replayFits(len(msgs), func(i int) int { return len(msgs[i].Data) }) {
			msgs, ok = nil, false
		}
		return msgs, Recovery{Recovered: ok, Replayed: len(msgs), Top: Position(top)}, nil
	case s.hist != nil:
		return nil, Recovery{Recovered: true, Top: Position(s.hist.Top(channel))}, nil
	case since != nil:
		return nil, Recovery{}, ErrNoHistory
	}
	return nil, Recovery{Recovered: true}, nil
}

// Unsubscribe removes ws from channel's subscribers; it is a no-op if ws
// does not subscribe. An engine error is returned after the local removal.
func (s *Server) Unsubscribe(ws *Conn, channel string) error {
	ws.udataMu.Lock()
	for i, ch := range ws.subs {
		if ch == channel {
			ws.subs = append(ws.subs[:i], ws.subs[i+1:]...)
			break
		}
	}
	ws.udataMu.Unlock()
	if !strings.HasPrefix(channel, presenceEventsPrefix) {
		// The channel's presence events go with it, if ws took them.
		s.pubsub.remove(ws, presenceChannel(channel))
	}
	return s.pubsub.remove(ws, channel)
}

func (p *pubsub) remove(ws *Conn, channel string) error {
	p.mu.Lock()
	subs, ok := p.channels[channel]
	if !ok {
		p.mu.Unlock()
		return nil
	}
	sub := subs[ws]
	delete(subs, ws)
	if len(subs) == 0 {
		delete(p.channels, channel)
	}
	last := !p.subscribed(channel)
	p.mu.Unlock()
	if sub != nil {
		sub.listing.end(p.srv, channel)
	}
	if last && p.srv.opts.Engine != nil {
		return p.syncEngine(channel)
	}
	return nil
}

// syncEngine brings the engine's subscription to channel in line with the
// table. It rereads the table after every engine call, so whichever of two
// racing first and last subscribers calls last leaves the engine right.
func (p *pubsub) syncEngine(channel string) error {
	e, err := p.engine()
	if err != nil {
		return err
	}
	p.engMu.Lock()
	defer p.engMu.Unlock()
	for {
		p.mu.RLock()
		want := p.subscribed(channel)
		have := p.remote[channel]
		p.mu.RUnlock()
		if want == have {
			return nil
		}
		if want {
			err = p.engineCall(opSubscribe, e, channel, nil, false)
		} else {
			err = p.engineCall(opUnsubscribe, e, channel, nil, false)
		}
		if err != nil {
			if want {
				return fmt.Errorf("wsext: subscribing to %q through the engine: %w", channel, err)
			}
			// The engine may still forward the channel; deliverLocal finds
			// no subscriber and drops what comes.
			p.srv.logs.Warn("engine unsubscribe", "wsext: unsubscribing through the engine", "channel", channel, "err", err)
			return fmt.Errorf("wsext: unsubscribing from %q through the engine: %w", channel, err)
		}
		p.mu.Lock()
		if want {
			p.remote[channel] = true
		} else {
			delete(p.remote, channel)
		}
		p.mu.Unlock()
	}
}

// Subscribers returns the number of connections of this process that
// subscribe to channel.
func (s *Server) Subscribers(channel string) int {
	s.pubsub.mu.RLock()
	defer s.pubsub.mu.RUnlock()
	return len(s.pubsub.channels[channel])
}

// dropAll ends every subscription of a closed connection.
func (p *pubsub) dropAll(ws *Conn) {
	ws.udataMu.Lock()
	subs := ws.subs
	ws.subs = nil
	ws.udataMu.Unlock()
	for _, ch := range subs {
		p.remove(ws, ch)
	}
}

// Publish sends a message to every subscriber of channel: to those of this
// process at once, with the frame encoded once for all of them, then
// through the Engine to every other process. A text message must be valid
// UTF-8 (else ErrInvalidUTF8 and nothing is sent). An engine failure is
// returned after the local delivery: the other processes did not get the
// message, and will not later.
//
// The messages of one publisher (one goroutine, or callbacks of one
// connection) on one channel reach every subscriber in publish order. A
// subscriber too slow to take them is closed by the MaxBackpressure limit
// like any other, so no subscriber delays the others.
func (s *Server) Publish(channel string, data []byte, isText bool) error {
	_, err := s.publish(nil, channel, data, isText, false)
	return err
}

// PublishPosition publishes like Publish and returns the message's
// position in the channel's history (the zero Position without history).
func (s *Server) PublishPosition(channel string, data []byte, isText bool) (Position, error) {
	return s.publish(nil, channel, data, isText, true)
}

// Publish publishes a message like Server.Publish, to every subscriber of
// channel except c itself, whether or not c subscribes.
func (c *Conn) Publish(channel string, data []byte, isText bool) error {
	_, err := c.srv.publish(c, channel, data, isText, false)
	return err
}

// publish publishes; wait asks for the message's position even when the
// engine would not need to be waited for (publishThroughHistory).
func (s *Server) publish(except *Conn, channel string, data []byte, isText, wait bool) (Position, error) {
	if isText && !utf8.Valid(data) {
		return Position{}, ErrInvalidUTF8
	}
	if s.histEng != nil {
		return s.publishThroughHistory(except, channel, data, isText, wait)
	}
	return s.publishPlain(except, channel, data, isText, true)
}

// publishPlain delivers a message to this process's subscribers at once
// (recording it in the in-process history when record is set), then
// forwards it through the Engine, which carries it without a position.
func (s *Server) publishPlain(except *Conn, channel string, data []byte, isText, record bool) (Position, error) {
	pos := s.deliver(except, 0, channel, Position{}, data, isText, record)
	e, err := s.pubsub.engine()
	if e == nil || err != nil {
		return pos, err
	}
	if err := s.pubsub.engineCall(opPublish, e, channel, data, isText); err != nil {
		return pos, fmt.Errorf("wsext: publishing on %q through the engine: %w", channel, err)
	}
	return pos, nil
}

// deliverLocal sends a message to this process's subscribers of channel
// only; it is the deliver function given to Engine.Start.
func (s *Server) deliverLocal(channel string, data []byte, isText bool) {
	s.deliver(nil, 0, channel, Position{}, data, isText, false)
}

// deliver writes a message to this process's subscribers of channel but
// except (or, from a HistoryEngine, the connection whose uuid is origin,
// which published it), and returns the message's position: pos as the
// engine gave it, or, when record is set, the one the in-process history
// gives it as it keeps it.
func (s *Server) deliver(except *Conn, origin uint64, channel string, pos Position, data []byte, isText, record bool) Position {
	p := &s.pubsub
	// The subscribers are copied out so that the table's lock is not held
	// through thousands of writes, which would hold up every Subscribe.
	sp, se := subsPool.Get().(*[]*Conn), subsPool.Get().(*[]*Conn)
	to, toEnv := (*sp)[:0], (*se)[:0]
	var held []heldTarget // rare: only while a subscriber is being recovered
	p.mu.RLock()
	if record && s.hist != nil {
		pos = Position(s.hist.Add(channel, data, isText))
	}
	for c, sub := range p.channels[channel] {
		switch {
		case c == except, origin != 0 && c.uuid == origin:
		case sub.held.Load() != nil:
			held = append(held, heldTarget{c, sub})
		case sub.envelope:
			toEnv = append(toEnv, c)
		default:
			to = append(to, c)
		}
	}
	funcs := p.funcsLocked(channel)
	p.mu.RUnlock()
	writeAll(channel, pos, data, isText, to, toEnv)
	for _, h := range held {
		h.deliver(channel, pos, data, isText)
	}
	putSubs(sp, to)
	putSubs(se, toEnv)
	p.deliverFuncs(funcs, pos, data, isText)
	return pos
}

// writeAll writes a message to subscribers: to as it is, encoded once for
// all, toEnv in the JSON envelope, encoded once for all.
func writeAll(channel string, pos Position, data []byte, isText bool, to, toEnv []*Conn) {
	if len(to) > 0 {
		pm := NewPreparedMessage(data, isText)
		for _, c := range to {
			c.WritePrepared(pm)
		}
		pm.Release()
	}
	if len(toEnv) > 0 {
		pe := newPositioned(channel, pos, data, isText, true)
		for _, c := range toEnv {
			c.WritePrepared(pe)
		}
		pe.Release()
	}
}

var subsPool = sync.Pool{New: func() any { s := make([]*Conn, 0, 64); return &s }}

// putSubs returns a subscriber list to subsPool, emptied, so that the pool
// keeps no connection alive; box is the list's pooled box.
func putSubs(box *[]*Conn, used []*Conn) {
	clear(used)
	if cap(used) <= 1<<16 {
		*box = used[:0]
		subsPool.Put(box)
	}
}

// The engine's methods, for engineCall.
const (
	opStart = iota
	opPublish
	opSubscribe
	opUnsubscribe
)

var engineOpNames = [...]string{"Start", "Publish", "Subscribe", "Unsubscribe"}

// engineCall calls one of the engine's methods under engineGuard.
func (p *pubsub) engineCall(op int, e Engine, channel string, data []byte, isText bool) (err error) {
	p.srv.engineGuard(engineOpNames[op], &err, func() { err = p.callEngine(op, e, channel, data, isText) })
	return err
}

func (p *pubsub) callEngine(op int, e Engine, channel string, data []byte, isText bool) error {
	switch op {
	case opStart:
		if err := e.Start(p.srv.deliverLocal); err != nil {
			return err
		}
		if p.srv.histEng != nil {
			return p.srv.histEng.StartHistory(p.srv.deliverPositioned)
		}
		return nil
	case opPublish:
		return e.Publish(channel, data, isText)
	case opSubscribe:
		return e.Subscribe(channel)
	default:
		return e.Unsubscribe(channel)
	}
}
