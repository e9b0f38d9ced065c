package wsext

import (
	"sync"
)

// Engine carries published messages between processes (and hosts). A
// Server delivers a publish to its own subscribers itself; the engine only
// forwards it to the other processes and hands their publishes back through
// the deliver function given to Start. Delivery is at most once.
type Engine interface {
	// Start begins receiving; deliver is called for every message another
	// process published on a channel this process subscribes to.
	Start(deliver func(channel string, data []byte, isText bool)) error
	// Publish forwards a message to the other processes.
	Publish(channel string, data []byte, isText bool) error
	// Subscribe is called when this process gains its first subscriber on
	// channel, Unsubscribe when it loses its last.
	Subscribe(channel string) error
	Unsubscribe(channel string) error
	// Close stops the engine.
	Close() error
}

// pubsub is a Server's channel table: which connections of this process
// subscribe to which channel.
type pubsub struct {
	srv      *Server
	mu       sync.RWMutex
	channels map[string]map[*Conn]struct{}
}

func (p *pubsub) init(s *Server) {
	p.srv = s
	p.channels = make(map[string]map[*Conn]struct{})
}

// Subscribe adds ws to channel's subscribers; it is a no-op if ws already
// subscribes. The subscription ends with the connection.
func (s *Server) Subscribe(ws *Conn, channel string) error {
	if ws.state.Load() == stateClosed || !ws.attached {
		return ErrClosed
	}
	p := &s.pubsub
	p.mu.Lock()
	subs := p.channels[channel]
	first := subs == nil
	if first {
		subs = make(map[*Conn]struct{})
		p.channels[channel] = subs
	}
	_, already := subs[ws]
	subs[ws] = struct{}{}
	p.mu.Unlock()
	if !already {
		ws.udataMu.Lock()
		ws.subs = append(ws.subs, channel)
		ws.udataMu.Unlock()
	}
	if first && s.opts.Engine != nil {
		return s.opts.Engine.Subscribe(channel)
	}
	return nil
}

// Unsubscribe removes ws from channel's subscribers.
func (s *Server) Unsubscribe(ws *Conn, channel string) error {
	ws.udataMu.Lock()
	for i, ch := range ws.subs {
		if ch == channel {
			ws.subs = append(ws.subs[:i], ws.subs[i+1:]...)
			break
		}
	}
	ws.udataMu.Unlock()
	return s.pubsub.remove(ws, channel)
}

func (p *pubsub) remove(ws *Conn, channel string) error {
	p.mu.Lock()
	subs := p.channels[channel]
	delete(subs, ws)
	last := subs != nil && len(subs) == 0
	if last {
		delete(p.channels, channel)
	}
	p.mu.Unlock()
	if last && p.srv.opts.Engine != nil {
		return p.srv.opts.Engine.Unsubscribe(channel)
	}
	return nil
}

func (p *pubsub) dropAll(ws *Conn) {
	ws.udataMu.Lock()
	subs := ws.subs
	ws.subs = nil
	ws.udataMu.Unlock()
	for _, ch := range subs {
		p.remove(ws, ch)
	}
}

// Publish sends a message to every subscriber of channel: here at once, and
// through the Engine to every other process. The frame is encoded once for
// all local subscribers. An engine failure is returned after local delivery.
func (s *Server) Publish(channel string, data []byte, isText bool) error {
	s.deliverLocal(channel, data, isText)
	if s.opts.Engine != nil {
		return s.opts.Engine.Publish(channel, data, isText)
	}
	return nil
}

// DeliverLocal sends a message to this process's subscribers of channel
// only; engines call it (through the function given to Engine.Start).
func (s *Server) deliverLocal(channel string, data []byte, isText bool) {
	p := &s.pubsub
	p.mu.RLock()
	subs := p.channels[channel]
	if len(subs) == 0 {
		p.mu.RUnlock()
		return
	}
	pm := NewPreparedMessage(data, isText)
	for c := range subs {
		c.WritePrepared(pm)
	}
	p.mu.RUnlock()
	pm.Release()
}
