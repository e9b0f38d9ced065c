package wsext

import (
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/wsd-server/wsd/internal/history"
)

// A Subscription is a subscriber that is not a WebSocket connection, such
// as a Server-Sent Events stream: a function called with every message
// published on its channel. Make one with Server.SubscribeFunc.
type Subscription struct {
	srv     *Server
	channel string
	fn      func(pos Position, data []byte, isText bool)
	done    atomic.Bool
	once    sync.Once
	// held is set while the subscription is being recovered (see
	// subscriber.held).
	held    atomic.Pointer[pending]
	listing listing       // its place in the channel's presence
	events  *Subscription // the channel's presence events, or nil
}

// SubscribeFunc subscribes fn to channel, through the same channel table
// and Engine subscriptions as Subscribe: every message published on
// channel, in this process or (through the Engine) in another, is passed
// to fn until the Subscription's Unsubscribe.
//
// fn runs on the publisher's goroutine (or the Engine's), so it must not
// block: a subscriber that cannot keep up queues the message and bounds
// its own queue. data is valid only during the call. fn may run on several
// goroutines at once, for messages of different publishers; the messages of
// one publisher come one at a time, in order. A panic in fn is recovered,
// counted in Stats.Panics and logged.
//
// As with Subscribe, an engine error is returned with the Subscription,
// which then receives the messages of this process only; Unsubscribe it if
// that is not enough. Server.Shutdown does not end Subscriptions: their
// owner does.
func (s *Server) SubscribeFunc(channel string, fn func(data []byte, isText bool)) (*Subscription, error) {
	sub, _, err := s.SubscribeFuncWith(channel, func(_ Position, data []byte, isText bool) { fn(data, isText) }, SubscribeOptions{})
	return sub, err
}

// SubscribeFuncWith subscribes fn like SubscribeFunc, with each message's
// position in the channel's history, and, when opts.Since is not nil,
// first the messages published after it (see SubscribeOptions.Since): fn
// gets them before SubscribeFuncWith returns, then the live ones, with no
// gap and no duplicate. opts.Presence lists the subscription in the
// channel's presence, opts.OnPresence receives its events; opts.Envelope
// and opts.PresenceEvents are for connections and ignored here. On a
// Server without history Since cannot be served: fn is subscribed all the
// same, not recovered, and ErrNoHistory is returned.
func (s *Server) SubscribeFuncWith(channel string, fn func(pos Position, data []byte, isText bool), opts SubscribeOptions) (*Subscription, Recovery, error) {
	sub, rec, err := s.subscribeFuncWith(channel, fn, opts)
	s.stats.countRecovery(opts.Since, rec, err)
	return sub, rec, err
}

func (s *Server) subscribeFuncWith(channel string, fn func(pos Position, data []byte, isText bool), opts SubscribeOptions) (*Subscription, Recovery, error) {
	sub := &Subscription{srv: s, channel: channel, fn: fn}
	if on := opts.OnPresence; on != nil {
		// First, so that the events are on when SubscribeFuncWith
		// returns: no join or leave of this process is missed after.
		evs, err := s.SubscribeFunc(presenceChannel(channel), func(data []byte, _ bool) {
			if ev, ok := parsePresenceEvent(data); ok {
				on(ev)
			}
		})
		sub.events = evs
		if err != nil {
			s.logs.Warn("presence events", "wsext: subscribing to presence events", "channel", channel, "err", err)
		}
	}
	p := &s.pubsub
	var (
		rec       Recovery
		noHistory error
		pend      *pending
	)
	p.mu.Lock()
	if s.histEng != nil {
		pend = &pending{max: s.opts.MaxBackpressure}
		sub.held.Store(pend)
	} else {
		var msgs []history.Message
		msgs, rec, noHistory = s.recoverLocked(channel, opts.Since)
		for _, m := range msgs {
			p.callFunc(sub, Position{m.Offset, rec.Top.Epoch}, m.Data, m.IsText)
		}
	}
	if p.funcs == nil {
		p.funcs = make(map[string]map[*Subscription]struct{})
	}
	subs := p.funcs[channel]
	if subs == nil {
		subs = make(map[*Subscription]struct{})
		p.funcs[channel] = subs
	}
	subs[sub] = struct{}{}
	needEngine := s.opts.Engine != nil && !p.remote[channel]
	p.mu.Unlock()
	if needEngine {
		if err := p.syncEngine(channel); err != nil {
			if pend != nil {
				pend.abandon(&sub.held)
			}
			return sub, rec, err
		}
	}
	if pend != nil {
		var err error
		rec, err = s.recoverFromEngine(channel, opts.Since, pend, &sub.held, sub.done.Load, func(Recovery) {},
			func(pos Position, data []byte, isText bool) { p.callFunc(sub, pos, data, isText) })
		if err != nil {
			return sub, rec, err
		}
	}
	if opts.Presence != nil {
		m := *opts.Presence
		if m.Client == "" {
			m.Client = s.clientID(s.nextUUID.Add(1))
		}
		sub.listing.join(s, channel, m)
	}
	return sub, rec, noHistory
}

// Unsubscribe ends the subscription; later calls do nothing. A delivery
// already under way may still call the function once after Unsubscribe
// returns. An engine error is returned after the local removal.
func (sub *Subscription) Unsubscribe() error {
	var err error
	sub.once.Do(func() {
		sub.done.Store(true)
		p := &sub.srv.pubsub
		p.mu.Lock()
		subs := p.funcs[sub.channel]
		delete(subs, sub)
		if len(subs) == 0 {
			delete(p.funcs, sub.channel)
		}
		last := !p.subscribed(sub.channel)
		p.mu.Unlock()
		if last && sub.srv.opts.Engine != nil {
			err = p.syncEngine(sub.channel)
		}
		sub.listing.end(sub.srv, sub.channel)
		if sub.events != nil {
			sub.events.Unsubscribe()
		}
	})
	return err
}

// subscribed reports whether channel has a subscriber in this process, a
// connection or a Subscription; p.mu must be held.
func (p *pubsub) subscribed(channel string) bool {
	return len(p.channels[channel]) > 0 || len(p.funcs[channel]) > 0
}

// FuncSubscribers returns the number of Subscriptions of this process to
// channel; Subscribers counts the connections.
func (s *Server) FuncSubscribers(channel string) int {
	s.pubsub.mu.RLock()
	defer s.pubsub.mu.RUnlock()
	return len(s.pubsub.funcs[channel])
}

// funcsLocked copies out the Subscriptions of channel, so that no lock is
// held while they run, as deliver copies the connections; p.mu must be
// held, the same hold in which the message got its position, or a
// subscriber recovering meanwhile could get it twice. It returns nil when
// there are none; pass the result to deliverFuncs.
func (p *pubsub) funcsLocked(channel string) *[]*Subscription {
	if len(p.funcs[channel]) == 0 {
		return nil
	}
	sp := funcsPool.Get().(*[]*Subscription)
	to := (*sp)[:0]
	for sub := range p.funcs[channel] {
		to = append(to, sub)
	}
	*sp = to
	return sp
}

// deliverFuncs passes a message to the Subscriptions funcsLocked copied
// out, and gives the copy back.
func (p *pubsub) deliverFuncs(sp *[]*Subscription, pos Position, data []byte, isText bool) {
	if sp == nil {
		return
	}
	to := *sp
	for _, sub := range to {
		if sub.done.Load() {
			continue
		}
		if pd := sub.held.Load(); pd != nil {
			pd.deliver(pos, data, isText, func() { p.callFunc(sub, pos, data, isText) })
		} else {
			p.callFunc(sub, pos, data, isText)
		}
	}
	clear(to)
	if cap(to) <= 1<<16 {
		*sp = to[:0]
		funcsPool.Put(sp)
	}
}

var funcsPool = sync.Pool{New: func() any { s := make([]*Subscription, 0, 64); return &s }}

// callFunc runs a Subscription's function under recover, as every callback
// is: a panic is the end of that one call, never of the process.
func (p *pubsub) callFunc(sub *Subscription, pos Position, data []byte, isText bool) {
	defer func() {
		if r := recover(); r != nil {
			p.srv.stats.panics.Add(1)
			p.srv.logs.Error("subscription panic", "wsext: panic in a SubscribeFunc function",
				"channel", sub.channel, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	sub.fn(pos, data, isText)
}
