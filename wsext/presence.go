package wsext

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Member is a subscriber listed in a channel's presence: a client (a
// connection, a stream) and the user it acts for.
type Member struct {
	// Client names the subscription, uniquely across processes; for a
	// connection SubscribeWith fills it in when empty.
	Client string `json:"client"`
	// User is who the client acts for (a token's subject, say); several
	// clients may share one.
	User string `json:"user,omitempty"`
}

// PresenceEvent is a join or leave event, as written to the subscribers
// that ask for them (SubscribeOptions.PresenceEvents):
//
//	{"presence":"join","channel":"room","client":"9f2c41d07ab3e5c6-17","user":"alice"}
type PresenceEvent struct {
	Presence string `json:"presence"` // "join" or "leave"
	Channel  string `json:"channel"`
	Member
}

// presenceEventsPrefix starts the name of the channel that carries a
// channel's presence events. The NUL byte keeps it apart from the names
// applications use; channel names starting with it are reserved.
const presenceEventsPrefix = "\x00presence\x00"

func presenceChannel(channel string) string { return presenceEventsPrefix + channel }

// randomID names a Server among the processes sharing an engine.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// clientID names a subscription of this Server in presence.
func (s *Server) clientID(n uint64) string { return s.id + "-" + strconv.FormatUint(n, 10) }

// Presence returns the members listed in channel's presence, by user then
// client: in every process, through a PresenceEngine, or this process's
// alone with any other Engine (or none).
func (s *Server) Presence(channel string) ([]Member, error) {
	var out []Member
	if s.presEng != nil {
		if _, err := s.pubsub.engine(); err != nil {
			return nil, err
		}
		var (
			infos map[string]string
			err   error
		)
		s.engineGuard("Presence", &err, func() { infos, err = s.presEng.Presence(channel) })
		if err != nil {
			return nil, fmt.Errorf("wsext: presence of %q through the engine: %w", channel, err)
		}
		out = make([]Member, 0, len(infos))
		for client, info := range infos {
			m := Member{Client: client}
			// An entry that is not ours to read still counts, nameless.
			json.Unmarshal([]byte(info), &m)
			m.Client = client
			out = append(out, m)
		}
	} else {
		p := &s.pubsub
		p.mu.RLock()
		for _, m := range p.members[channel] {
			out = append(out, m)
		}
		p.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b Member) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		return strings.Compare(a.Client, b.Client)
	})
	return out, nil
}

// listing is a subscription's place in its channel's presence. Its lock
// orders the join of a subscription with the leave of its end, which may
// come meanwhile (a connection that closes while it is being recovered):
// once ended, nothing joins, and a join that came first is left.
type listing struct {
	mu     sync.Mutex
	member *Member // nil when not listed
	ended  bool
}

// join lists the subscription as m, unless it is listed already or ended.
func (l *listing) join(s *Server, channel string, m Member) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended || l.member != nil {
		return
	}
	l.member = &m
	s.join(channel, m)
}

// end takes the subscription out of the presence, for good.
func (l *listing) end(s *Server, channel string) {
	l.mu.Lock()
	l.ended = true
	m := l.member
	l.member = nil
	l.mu.Unlock()
	if m != nil {
		s.leave(channel, *m)
	}
}

// join lists m in channel's presence and tells the subscribers that ask.
func (s *Server) join(channel string, m Member) {
	if s.presEng != nil {
		info, _ := json.Marshal(m)
		var err error
		if _, err = s.pubsub.engine(); err == nil {
			s.engineGuard("Join", &err, func() { err = s.presEng.Join(channel, m.Client, string(info)) })
		}
		if err != nil {
			s.logs.Warn("engine join", "wsext: listing a subscriber in presence", "channel", channel, "err", err)
		}
	} else {
		p := &s.pubsub
		p.mu.Lock()
		if p.members == nil {
			p.members = make(map[string]map[string]Member)
		}
		set := p.members[channel]
		if set == nil {
			set = make(map[string]Member)
			p.members[channel] = set
		}
		set[m.Client] = m
		p.mu.Unlock()
	}
	s.presenceEvent(channel, "join", m)
}

// leave ends m's listing in channel's presence and tells the subscribers
// that ask.
func (s *Server) leave(channel string, m Member) {
	if s.presEng != nil {
		var err error
		s.engineGuard("Leave", &err, func() { err = s.presEng.Leave(channel, m.Client) })
		if err != nil {
			s.logs.Warn("engine leave", "wsext: ending a subscriber's presence", "channel", channel, "err", err)
		}
	} else {
		p := &s.pubsub
		p.mu.Lock()
		if set := p.members[channel]; set != nil {
			delete(set, m.Client)
			if len(set) == 0 {
				delete(p.members, channel)
			}
		}
		p.mu.Unlock()
	}
	s.presenceEvent(channel, "leave", m)
}

// presenceEvent publishes a join or leave on channel's events channel, as
// a message without a position: events are not history.
func (s *Server) presenceEvent(channel, kind string, m Member) {
	if !s.opts.PresenceEvents {
		return
	}
	b, _ := json.Marshal(PresenceEvent{Presence: kind, Channel: channel, Member: m})
	if _, err := s.publishPlain(nil, presenceChannel(channel), b, true, false); err != nil {
		s.logs.Warn("engine presence event", "wsext: publishing a presence event", "channel", channel, "err", err)
	}
}

// subscribeEvents subscribes ws to channel's presence events, written as
// PresenceEvent JSON text messages.
func (s *Server) subscribeEvents(ws *Conn, channel string) {
	if err := s.Subscribe(ws, presenceChannel(channel)); err != nil {
		s.logs.Warn("presence events", "wsext: subscribing to presence events", "channel", channel, "err", err)
	}
}

// parsePresenceEvent reads what presenceEvent published.
func parsePresenceEvent(data []byte) (PresenceEvent, bool) {
	var ev PresenceEvent
	if json.Unmarshal(data, &ev) != nil || (ev.Presence != "join" && ev.Presence != "leave") {
		return ev, false
	}
	return ev, true
}
