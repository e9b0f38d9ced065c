package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 64 << 20
	}
}

// Hub is the master's side: it serves the workers' connections, one per
// worker, and relays every publish to the other workers that subscribe to
// its channel. The connections come from Attach (wsd's master hands it one
// end of a socketpair per worker) or from a listener (Listen, Serve).
type Hub struct {
	opts Options
	ln   net.Listener // nil for a Hub made by NewHub

	mu     sync.RWMutex
	subs   map[string]map[*peer]struct{}
	peers  map[*peer]struct{}
	closed bool
	wg     sync.WaitGroup

	dropped atomic.Uint64
}

// peer is one worker's connection to the Hub.
type peer struct {
	conn     net.Conn
	out      *sender
	channels map[string]struct{} // under Hub.mu
	dropped  atomic.Uint64       // messages not relayed since the last log line
	lastLog  atomic.Int64        // unix nanoseconds of that line
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
	return &Hub{
		opts:  opts,
		subs:  make(map[string]map[*peer]struct{}),
		peers: make(map[*peer]struct{}),
	}
}

// Addr returns the address the Hub listens on, or nil for a Hub made by
// NewHub.
func (h *Hub) Addr() net.Addr {
	if h.ln == nil {
		return nil
	}
	return h.ln.Addr()
}

// Dropped returns the number of messages the Hub did not relay to a worker
// because that worker's queue was full.
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
// closed. The Hub then forgets the worker's subscriptions and closes conn.
// Attach returns at once; after Close it closes conn and returns
// ErrHubClosed.
func (h *Hub) Attach(conn net.Conn) error {
	p := &peer{conn: conn, out: newSender(conn, h.opts.MaxQueue), channels: make(map[string]struct{})}
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
		err := p.out.queue(len(raw), func(b []byte) []byte { return append(b, raw...) })
		if errors.Is(err, ErrQueueFull) {
			h.dropped.Add(1)
			p.dropped.Add(1)
			h.logDrops(p)
		}
	}
}

// logDrops logs a worker's dropped messages at most once a second.
func (h *Hub) logDrops(p *peer) {
	now := time.Now().UnixNano()
	last := p.lastLog.Load()
	if now-last < int64(time.Second) || !p.lastLog.CompareAndSwap(last, now) {
		return
	}
	h.opts.Logger.Warn("pub/sub relay: a worker is not keeping up; messages to it were dropped",
		"dropped", p.dropped.Swap(0), "queue_limit", h.opts.MaxQueue)
}
