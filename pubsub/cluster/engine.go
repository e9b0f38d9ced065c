package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDisconnected is returned by Publish while the Engine is not connected
// to the Hub: the message does not reach the other workers.
var ErrDisconnected = errors.New("cluster: not connected to the master's pub/sub relay")

// Reconnection backoff bounds.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
)

// Engine is a worker's side: a wsext.Engine that carries its process's
// publishes to the Hub and the other workers' publishes back. It keeps one
// connection to the Hub, written in order, and reconnects (resubscribing
// every channel it holds) when the connection breaks.
type Engine struct {
	connect func(context.Context) (net.Conn, error)
	opts    Options

	mu       sync.Mutex
	conn     net.Conn // nil while disconnected
	out      *sender
	channels map[string]struct{}
	closed   bool

	deliver atomic.Pointer[func(channel string, data []byte, isText bool)]
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the connection loop returns
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

// attach makes conn the Engine's connection and resubscribes on it.
func (e *Engine) attach(conn net.Conn) int {
	out := newSender(conn, e.opts.MaxQueue)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		conn.Close()
		return 0
	}
	for ch := range e.channels {
		out.queue(lenSize+1+len(ch), func(b []byte) []byte { return appendSub(b, opSubscribe, ch) })
	}
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

// read delivers the messages that arrive on conn until it fails.
func (e *Engine) read(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	for {
		raw, f, err := readFrame(br, buf)
		if err != nil {
			return err
		}
		buf = raw[:0]
		if f.op == opPublish {
			if d := e.deliver.Load(); d != nil {
				(*d)(string(f.channel), f.data, f.text)
			}
		}
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

// Start sets the function that delivers the other workers' messages to
// this process.
func (e *Engine) Start(deliver func(channel string, data []byte, isText bool)) error {
	e.deliver.Store(&deliver)
	return nil
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
	if e.out == nil {
		return nil // attach resubscribes
	}
	err := e.out.queue(lenSize+1+len(channel), func(b []byte) []byte { return appendSub(b, op, channel) })
	if errors.Is(err, ErrQueueFull) {
		// The Hub is not reading: drop the connection, and resubscribe
		// everything on the next one, rather than lose this change.
		e.conn.Close()
	}
	// Any other failure is a broken connection, which loop replaces,
	// resubscribing from e.channels.
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
