package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsd-server/wsd/internal/history"
)

// ErrDisconnected is returned by Publish while the Engine is not connected
// to the Hub: the message does not reach the other workers. The requests
// (PublishHistory, History, Presence) fail with it, wrapped, when the
// connection is down or breaks before their answer.
var ErrDisconnected = errors.New("cluster: not connected to the master's pub/sub relay")

// ErrTimeout is returned, wrapped, by a request whose answer did not come
// within Options.RequestTimeout.
var ErrTimeout = errors.New("cluster: the master's pub/sub relay did not answer in time")

// Reconnection backoff bounds.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
)

// Engine is a worker's side: a wsext.Engine that carries its process's
// publishes to the Hub and the other workers' publishes back. It keeps one
// connection to the Hub, written in order, and reconnects (resubscribing
// every channel it holds, and listing again every presence entry) when
// the connection breaks.
//
// It is a wsext.HistoryEngine and a wsext.PresenceEngine as well: the Hub
// keeps the history and the presence, and PublishHistory, History and
// Presence are requests that wait for the Hub's answer, for at most
// Options.RequestTimeout. Answers are read, and messages delivered, on
// the Engine's one reading goroutine, which never waits for a caller.
type Engine struct {
	connect func(context.Context) (net.Conn, error)
	opts    Options

	mu       sync.Mutex
	conn     net.Conn // nil while disconnected
	out      *sender
	channels map[string]struct{}
	joined   map[string]map[string]string // channel → client → info
	pending  map[uint32]*request          // the requests sent on conn, by id
	lastID   uint32
	closed   bool

	deliver        atomic.Pointer[func(channel string, data []byte, isText bool)]
	deliverHistory atomic.Pointer[func(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool)]
	done           chan struct{} // closed by Close
	stopped        chan struct{} // closed when the connection loop returns
}

// request is a request waiting for its answer. The reading goroutine
// fills it in, and then, under Engine.mu, takes it out of pending and
// closes done; a request taken out otherwise (failed, timed out) is not
// touched again.
type request struct {
	done chan struct{}
	err  error // why the request failed, set before done is closed

	offset    uint64 // the ack's, or the history's top
	epoch     string
	recovered bool
	msgs      []history.Message // the history answer's
	presence  map[string]string
}

// Dial connects an Engine to the Hub listening on the unix socket at path,
// retrying until ctx ends (the master may still be setting up). Once
// connected, the Engine reconnects by itself, without end, until Close.
func Dial(ctx context.Context, path string, opts Options) (*Engine, error) {
	var d net.Dialer
	e, err := NewEngine(ctx, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (at %s)", err, path)
	}
	return e, nil
}

// NewEngine connects an Engine to a Hub through connect, which returns a
// new connection to the Hub each time it is called; wsd's workers ask
// their master for one over a socket they inherit. NewEngine calls connect
// until it succeeds or ctx ends; once connected, the Engine calls it again,
// with backoff and without end until Close, whenever the connection
// breaks. connect must return when its context ends.
func NewEngine(ctx context.Context, connect func(context.Context) (net.Conn, error), opts Options) (*Engine, error) {
	opts.setDefaults()
	e := &Engine{
		connect:  connect,
		opts:     opts,
		channels: make(map[string]struct{}),
		joined:   make(map[string]map[string]string),
		pending:  make(map[uint32]*request),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	conn, err := e.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to the pub/sub relay: %w", err)
	}
	e.attach(conn)
	go e.loop(conn)
	return e, nil
}

// dial connects, retrying with backoff until ctx ends or Close.
func (e *Engine) dial(ctx context.Context) (net.Conn, error) {
	delay := minBackoff
	for {
		conn, err := e.connect(ctx)
		if err == nil {
			return conn, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-e.done:
			t.Stop()
			return nil, net.ErrClosed
		case <-t.C:
		}
		delay = min(2*delay, maxBackoff)
	}
}

// attach makes conn the Engine's connection, and resubscribes and lists
// its presence entries again on it, before anything else is sent.
func (e *Engine) attach(conn net.Conn) int {
	out := newSender(conn, e.opts.MaxQueue)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		conn.Close()
		return 0
	}
	// The state is replayed whole, past MaxQueue if need be: dropping
	// part of it would lose subscriptions, and e's maps bound it anyway.
	out.queueAll(func(b []byte) []byte {
		for ch := range e.channels {
			b = appendSub(b, opSubscribe, ch)
		}
		for ch, clients := range e.joined {
			for client, info := range clients {
				b = appendJoin(b, ch, client, info)
			}
		}
		return b
	})
	e.conn, e.out = conn, out
	go out.run()
	return len(e.channels)
}

// loop reads conn until it breaks, then reconnects, until Close.
func (e *Engine) loop(conn net.Conn) {
	defer close(e.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-e.done
		cancel()
	}()
	for {
		err := e.read(conn)
		e.mu.Lock()
		closed := e.closed
		if e.out != nil {
			e.out.close()
		}
		e.conn, e.out = nil, nil
		// The answers to the requests sent on conn are lost with it.
		for id, req := range e.pending {
			req.err = fmt.Errorf("%w: the connection broke before the answer: %w", ErrDisconnected, err)
			delete(e.pending, id)
			close(req.done)
		}
		e.mu.Unlock()
		conn.Close()
		if closed {
			return
		}
		e.opts.Logger.Warn("pub/sub: lost the master's relay; reconnecting", "err", err)
		conn, err = e.dial(ctx)
		if err != nil {
			return // closed
		}
		n := e.attach(conn)
		e.opts.Logger.Info("pub/sub: reconnected to the master's relay", "channels", n)
	}
}

// read delivers the messages that arrive on conn, and hands the answers
// to their requests, until conn fails. It never waits for a caller.
func (e *Engine) read(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	var known names // channel names and epochs, made once each
	// The history answer being read: its id, its request (nil when it
	// timed out meanwhile) and how many entries are still to come.
	var (
		answering uint32
		answer    *request
		left      uint32
	)
	for {
		raw, f, err := readFrame(br, buf)
		if err != nil {
			return err
		}
		buf = raw[:0]
		if left > 0 && f.op != opHistoryEntry {
			return fmt.Errorf("%w: %q frame inside a history answer", errFrame, f.op)
		}
		switch f.op {
		case opPublish:
			if d := e.deliver.Load(); d != nil {
				(*d)(string(f.channel), f.data, f.text)
			}
		case opPositioned:
			if d := e.deliverHistory.Load(); d != nil {
				(*d)(known.get(f.channel), f.offset, known.get(f.epoch), f.origin, f.data, f.text)
			}
		case opAck:
			e.mu.Lock()
			if req := e.pending[f.id]; req != nil {
				req.offset, req.epoch = f.offset, string(f.epoch)
				delete(e.pending, f.id)
				close(req.done)
			}
			e.mu.Unlock()
		case opHistoryAnswer:
			answering, answer, left = f.id, e.waiting(f.id), f.count
			if answer != nil {
				answer.offset, answer.epoch, answer.recovered = f.offset, string(f.epoch), f.recovered
				answer.msgs = make([]history.Message, 0, min(left, 1<<10))
			}
			if left == 0 {
				e.answered(answering, answer)
			}
		case opHistoryEntry:
			if left == 0 || f.id != answering {
				return fmt.Errorf("%w: history entry %d outside its answer", errFrame, f.id)
			}
			if answer != nil {
				answer.msgs = append(answer.msgs, history.Message{Offset: f.offset, Data: bytes.Clone(f.data), IsText: f.text})
			}
			if left--; left == 0 {
				e.answered(answering, answer)
				answer = nil
			}
		case opPresenceAnswer:
			if req := e.waiting(f.id); req != nil {
				if req.presence == nil {
					req.presence = make(map[string]string)
				}
				for client, info := range presenceEntries(f.data) {
					req.presence[string(client)] = string(info)
				}
				if !f.more {
					e.answered(f.id, req)
				}
			}
		}
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

// waiting returns the request waiting for the answer id, or nil.
func (e *Engine) waiting(id uint32) *request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pending[id]
}

// answered hands req, complete, to its caller, if it still waits.
func (e *Engine) answered(id uint32, req *request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if req != nil && e.pending[id] == req {
		delete(e.pending, id)
		close(req.done)
	}
}

// request sends a request, written by enc with its id, and waits for its
// answer until Options.RequestTimeout.
func (e *Engine) request(size int, enc func(b []byte, id uint32) []byte) (*request, error) {
	req := &request{done: make(chan struct{})}
	e.mu.Lock()
	if e.out == nil || e.closed {
		e.mu.Unlock()
		return nil, ErrDisconnected
	}
	e.lastID++
	// After 2³² requests: skip those still waiting, and 0, which means
	// "no answer" (ForwardHistory).
	for e.lastID == 0 || e.pending[e.lastID] != nil {
		e.lastID++
	}
	id := e.lastID
	if err := e.out.queue(size, func(b []byte) []byte { return enc(b, id) }); err != nil {
		e.mu.Unlock()
		if !errors.Is(err, ErrQueueFull) {
			err = fmt.Errorf("%w: %w", ErrDisconnected, err)
		}
		return nil, err
	}
	e.pending[id] = req
	e.mu.Unlock()

	t := time.NewTimer(e.opts.RequestTimeout)
	defer t.Stop()
	select {
	case <-req.done:
	case <-t.C:
		e.mu.Lock()
		if e.pending[id] == req {
			delete(e.pending, id)
			e.mu.Unlock()
			return nil, fmt.Errorf("%w (%v)", ErrTimeout, e.opts.RequestTimeout)
		}
		e.mu.Unlock()
		<-req.done // answered or failed just now: done is closed
	}
	if req.err != nil {
		return nil, req.err
	}
	return req, nil
}

// Start sets the function that delivers the other workers' messages to
// this process.
func (e *Engine) Start(deliver func(channel string, data []byte, isText bool)) error {
	e.deliver.Store(&deliver)
	return nil
}

// StartHistory sets the function that delivers the messages published with
// PublishHistory, by any worker, this one included, with their positions.
// A Server uses it instead of Start; the Engine serves both, each with its
// own messages.
func (e *Engine) StartHistory(deliver func(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool)) error {
	e.deliverHistory.Store(&deliver)
	return nil
}

// PublishHistory has the Hub keep a message in channel's history and
// forward it to every subscribing worker, this one included, and returns
// its position. It fails with ErrDisconnected at once while the
// connection to the Hub is down, and with ErrQueueFull when the Hub does
// not read; then the message is lost. Any other error (ErrTimeout, a
// connection that broke meanwhile) leaves it unknown whether the Hub got
// the message.
func (e *Engine) PublishHistory(channel string, data []byte, isText bool, origin uint64) (offset uint64, epoch string, err error) {
	if err := checkSizes(channel, data); err != nil {
		return 0, "", err
	}
	req, err := e.request(publishHistorySize(channel, data), func(b []byte, id uint32) []byte {
		return appendPublishHistory(b, id, origin, channel, data, isText)
	})
	if err != nil {
		return 0, "", fmt.Errorf("cluster: publishing with history: %w", err)
	}
	return req.offset, req.epoch, nil
}

// ForwardHistory publishes like PublishHistory but does not wait for the
// message's position: the Hub sends no answer for it. The messages keep
// their order with the Engine's other publishes, on its one connection. It
// fails at once while disconnected (ErrDisconnected) or when the Hub does
// not read (ErrQueueFull); later failures go unreported, as with Publish.
// See wsext.HistoryForwarder.
func (e *Engine) ForwardHistory(channel string, data []byte, isText bool, origin uint64) error {
	if err := checkSizes(channel, data); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.out == nil || e.closed {
		return ErrDisconnected
	}
	err := e.out.queue(publishHistorySize(channel, data), func(b []byte) []byte {
		return appendPublishHistory(b, 0, origin, channel, data, isText)
	})
	if err != nil && !errors.Is(err, ErrQueueFull) {
		err = fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	return err
}

// History asks the Hub for channel's messages after (offset, epoch) and
// calls fn with them, oldest first, if recovered; see
// wsext.HistoryEngine. The Hub answers after it has this Engine's
// subscription to channel, sent before: every message not in the answer
// comes to StartHistory's deliver after the answer. The reading goroutine
// does not wait for History, though: such a message may be delivered
// while History is still calling fn, never before History has its answer.
// History must not be called from deliver, which would wait for itself
// until RequestTimeout.
func (e *Engine) History(channel string, offset uint64, epoch string, fn func(offset uint64, data []byte, isText bool)) (top uint64, topEpoch string, recovered bool, err error) {
	if err := checkNames(channel, epoch); err != nil {
		return 0, "", false, err
	}
	req, err := e.request(lenSize+historyRequestHeader+len(epoch)+len(channel), func(b []byte, id uint32) []byte {
		return appendHistoryRequest(b, id, offset, epoch, channel)
	})
	if err != nil {
		return 0, "", false, fmt.Errorf("cluster: reading history: %w", err)
	}
	if req.recovered {
		for _, m := range req.msgs {
			fn(m.Offset, m.Data, m.IsText)
		}
	}
	return req.offset, req.epoch, req.recovered, nil
}

// Join lists client in channel, with info, in the Hub's presence, at once
// or, while disconnected, on the next connection; the listing is kept
// across reconnections, until Leave. The Hub drops it when this Engine's
// connection ends.
func (e *Engine) Join(channel, client, info string) error {
	if err := checkNames(channel, client, info); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return net.ErrClosed
	}
	clients := e.joined[channel]
	if clients == nil {
		clients = make(map[string]string)
		e.joined[channel] = clients
	}
	clients[client] = info
	return e.sendLocked(lenSize+joinHeader+len(channel)+len(client)+len(info), func(b []byte) []byte {
		return appendJoin(b, channel, client, info)
	})
}

// Leave ends client's listing in channel.
func (e *Engine) Leave(channel, client string) error {
	if err := checkNames(channel, client); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return net.ErrClosed
	}
	if _, ok := e.joined[channel][client]; !ok {
		return nil
	}
	delete(e.joined[channel], client)
	if len(e.joined[channel]) == 0 {
		delete(e.joined, channel)
	}
	return e.sendLocked(lenSize+leaveHeader+len(channel)+len(client), func(b []byte) []byte {
		return appendLeave(b, channel, client)
	})
}

// Presence asks the Hub for the clients listed in channel by every
// worker, with their info.
func (e *Engine) Presence(channel string) (map[string]string, error) {
	if err := checkNames(channel); err != nil {
		return nil, err
	}
	req, err := e.request(lenSize+presenceRequestHeader+len(channel), func(b []byte, id uint32) []byte {
		return appendPresenceRequest(b, id, channel)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: reading presence: %w", err)
	}
	if req.presence == nil {
		return map[string]string{}, nil
	}
	return req.presence, nil
}

// Publish queues a message for the other workers. It fails with
// ErrDisconnected while the connection to the Hub is down and with
// ErrQueueFull when the Hub does not read; the message is then lost.
func (e *Engine) Publish(channel string, data []byte, isText bool) error {
	if err := checkSizes(channel, data); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.out == nil {
		return ErrDisconnected
	}
	return e.out.queue(lenSize+4+len(channel)+len(data), func(b []byte) []byte {
		return appendPublish(b, channel, data, isText)
	})
}

// Subscribe asks the Hub for the other workers' messages on channel. The
// subscription is kept across reconnections.
func (e *Engine) Subscribe(channel string) error {
	return e.sub(opSubscribe, channel)
}

// Unsubscribe ends the subscription to channel.
func (e *Engine) Unsubscribe(channel string) error {
	return e.sub(opUnsubscribe, channel)
}

func (e *Engine) sub(op byte, channel string) error {
	if len(channel) > MaxChannel {
		return fmt.Errorf("%w: channel name of %d bytes", ErrTooLarge, len(channel))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return net.ErrClosed
	}
	if op == opSubscribe {
		e.channels[channel] = struct{}{}
	} else {
		delete(e.channels, channel)
	}
	return e.sendLocked(lenSize+1+len(channel), func(b []byte) []byte { return appendSub(b, op, channel) })
}

// sendLocked queues a change of the state that attach replays
// (subscriptions, presence), already made in e's maps, if connected.
func (e *Engine) sendLocked(size int, enc func([]byte) []byte) error {
	if e.out == nil {
		return nil // attach sends it
	}
	err := e.out.queue(size, enc)
	if errors.Is(err, ErrQueueFull) {
		// The Hub is not reading: drop the connection, and send the
		// whole state on the next one, rather than lose this change.
		e.conn.Close()
	}
	// Any other failure is a broken connection, which loop replaces,
	// sending the whole state again.
	return nil
}

// Close disconnects from the Hub and stops the Engine.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return net.ErrClosed
	}
	e.closed = true
	if e.conn != nil {
		e.conn.Close()
	}
	e.mu.Unlock()
	close(e.done)
	<-e.stopped
	return nil
}
