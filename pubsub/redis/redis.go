package redis

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultPrefix is put before every channel name on Redis, so that wsd's
// channels do not mix with another application's on a shared Redis.
const DefaultPrefix = "wsd:"

// ErrUnavailable is wrapped by Publish's error when Redis cannot be
// reached: the message reached no other process.
var ErrUnavailable = errors.New("redis: unavailable")

// The payload of a message on Redis: a version byte, a flags byte (bit 0:
// text), the publishing Engine's 8-byte origin id, then the message.
const (
	payloadVersion = 1
	flagText       = 1
	headerSize     = 2 + originSize
	originSize     = 8
)

// Reconnection backoff bounds.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Options configure an Engine. Only URL is required.
type Options struct {
	// URL is redis://[user:password@]host:port[/db], or rediss:// for TLS.
	URL string
	// Prefix goes before every channel name on Redis; "" means
	// DefaultPrefix. Engines share channels only with the same prefix.
	Prefix string
	// Logger receives connection changes and failed publishes; nil means
	// slog.Default().
	Logger *slog.Logger
	// Timeout bounds each command and dial; 0 means 2 seconds. A Redis that
	// does not answer within it counts as down.
	Timeout time.Duration
	// HealthInterval is how long the subscription connection may stay
	// silent before it is pinged; one that does not answer the ping within
	// another interval is replaced. 0 means 15 seconds.
	HealthInterval time.Duration
}

// Engine is a wsext.Engine over Redis PUBLISH and SUBSCRIBE: daemons on
// different hosts that share a Redis share channels.
type Engine struct {
	opts   Options
	log    *slog.Logger
	client *goredis.Client
	origin [originSize]byte

	mu       sync.Mutex // guards ps and channels
	ps       *goredis.PubSub
	channels map[string]struct{}

	deliver atomic.Pointer[func(channel string, data []byte, isText bool)]
	ctx     context.Context
	cancel  context.CancelFunc
	started atomic.Bool
	stopped chan struct{}

	failures atomic.Int64 // failed publishes since the last log line
	lastLog  atomic.Int64 // unix nanoseconds of that line
}

// New returns an Engine for the Redis at opts.URL. It does not connect:
// Start does, and Publish. A daemon may start while Redis is down.
func New(opts Options) (*Engine, error) {
	ro, err := goredis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 15 * time.Second
	}
	// A PUBLISH is never sent twice: one whose answer was lost may have
	// been delivered, and delivery is at most once.
	ro.MaxRetries = -1
	// One dial per attempt: Publish fails fast while Redis is down, and
	// receive has a backoff of its own.
	ro.DialerRetries = 1
	ro.DialTimeout = opts.Timeout
	ro.ReadTimeout = opts.Timeout
	ro.WriteTimeout = opts.Timeout
	ro.DisableIdentity = true
	e := &Engine{
		opts:     opts,
		log:      opts.Logger,
		client:   goredis.NewClient(ro),
		channels: make(map[string]struct{}),
		stopped:  make(chan struct{}),
	}
	crand.Read(e.origin[:])
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.ps = e.client.Subscribe(e.ctx)
	return e, nil
}

// Start starts receiving: deliver gets every message another process
// published on a channel this one subscribes to.
func (e *Engine) Start(deliver func(channel string, data []byte, isText bool)) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("redis: engine already started")
	}
	e.deliver.Store(&deliver)
	go e.receive()
	return nil
}

// Publish sends a message to the other processes with one PUBLISH, waiting
// for Redis's answer: one publisher's messages on a channel reach Redis,
// and so every subscriber, in order. When Redis cannot be reached the error
// wraps ErrUnavailable, the failure is logged, and the message is lost.
func (e *Engine) Publish(channel string, data []byte, isText bool) error {
	payload := make([]byte, headerSize+len(data))
	payload[0] = payloadVersion
	if isText {
		payload[1] = flagText
	}
	copy(payload[2:], e.origin[:])
	copy(payload[headerSize:], data)
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
	defer cancel()
	if err := e.client.Publish(ctx, e.opts.Prefix+channel, payload).Err(); err != nil {
		e.publishFailed(channel, err)
		if isNetwork(err) {
			return fmt.Errorf("%w: publishing on %q: %w", ErrUnavailable, channel, err)
		}
		return fmt.Errorf("redis: publishing on %q: %w", channel, err)
	}
	return nil
}

// publishFailed logs failed publishes: the first at once, then at most one
// line a second with the number that failed meanwhile.
func (e *Engine) publishFailed(channel string, err error) {
	n := e.failures.Add(1)
	now := time.Now().UnixNano()
	last := e.lastLog.Load()
	if now-last < int64(time.Second) || !e.lastLog.CompareAndSwap(last, now) {
		return
	}
	e.failures.Add(-n)
	e.log.Error("pub/sub: publish to Redis failed; messages lost", "channel", channel, "failed", n, "err", err)
}

// Subscribe subscribes to channel on Redis. While Redis is down the
// subscription is recorded and made when the connection comes back.
func (e *Engine) Subscribe(channel string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return net.ErrClosed
	}
	e.channels[channel] = struct{}{}
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
	defer cancel()
	if err := e.ps.Subscribe(ctx, e.opts.Prefix+channel); err != nil {
		// go-redis keeps the channel and subscribes again on reconnection.
		e.log.Debug("pub/sub: subscribing on Redis; will retry on reconnection", "channel", channel, "err", err)
	}
	return nil
}

// Unsubscribe ends the subscription to channel.
func (e *Engine) Unsubscribe(channel string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return net.ErrClosed
	}
	delete(e.channels, channel)
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
	defer cancel()
	if err := e.ps.Unsubscribe(ctx, e.opts.Prefix+channel); err != nil {
		// A connection that failed is replaced without the channel.
		e.log.Debug("pub/sub: unsubscribing on Redis", "channel", channel, "err", err)
	}
	return nil
}

// Close stops the Engine and closes its connections.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.ctx.Err() != nil {
		e.mu.Unlock()
		return net.ErrClosed
	}
	e.cancel()
	err := e.ps.Close()
	e.mu.Unlock()
	if e.started.Load() {
		<-e.stopped
	}
	return errors.Join(err, e.client.Close())
}

func (e *Engine) pubsub() *goredis.PubSub {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ps
}

// receive reads the subscription connection until Close. go-redis redials
// a broken connection and resubscribes on the next read; this loop spaces
// those attempts out and notices a connection that went silent.
func (e *Engine) receive() {
	defer close(e.stopped)
	var (
		backoff time.Duration
		down    bool // a read failed and none has succeeded since
		pinged  bool // a ping is out and nothing came back since
	)
	for {
		m, err := e.pubsub().ReceiveTimeout(e.ctx, e.opts.HealthInterval)
		if e.ctx.Err() != nil {
			return
		}
		if err != nil {
			switch {
			case isTimeout(err) && !down && !pinged:
				// Quiet, or dead: a ping tells, within another interval.
				pinged = true
				e.pubsub().Ping(e.ctx)
				continue
			case isTimeout(err) && !down:
				e.log.Warn("pub/sub: Redis does not answer; reconnecting", "silent_for", 2*e.opts.HealthInterval)
				e.replace()
			case !down:
				e.log.Warn("pub/sub: lost Redis; reconnecting", "err", err)
			}
			down = true
			pinged = false
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			// Jitter keeps many daemons from reconnecting in step.
			d := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		pinged = false
		if down {
			down, backoff = false, 0
			e.mu.Lock()
			n := len(e.channels)
			e.mu.Unlock()
			e.log.Info("pub/sub: reconnected to Redis; channels resubscribed", "channels", n)
		}
		if msg, ok := m.(*goredis.Message); ok {
			e.handle(msg)
		}
	}
}

// replace swaps the subscription connection for a new one subscribed to
// the same channels: go-redis does not give up on a connection that is
// open but silent.
func (e *Engine) replace() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ps.Close()
	e.ps = e.client.Subscribe(e.ctx)
	names := make([]string, 0, len(e.channels))
	for ch := range e.channels {
		names = append(names, e.opts.Prefix+ch)
	}
	if len(names) > 0 {
		ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
		e.ps.Subscribe(ctx, names...) // recorded even if it fails now
		cancel()
	}
}

// handle delivers one message from Redis, unless this Engine published it
// or it is not one of wsd's.
func (e *Engine) handle(m *goredis.Message) {
	channel, ok := strings.CutPrefix(m.Channel, e.opts.Prefix)
	p := m.Payload
	if !ok || len(p) < headerSize || p[0] != payloadVersion || p[1]&^flagText != 0 {
		e.log.Debug("pub/sub: ignoring a message that wsd did not publish", "channel", m.Channel)
		return
	}
	if p[2:headerSize] == string(e.origin[:]) {
		return // wsext delivered it here already
	}
	isText := p[1]&flagText != 0
	data := p[headerSize:]
	if isText && !utf8.ValidString(data) {
		e.log.Debug("pub/sub: ignoring a text message that is not UTF-8", "channel", m.Channel)
		return
	}
	if d := e.deliver.Load(); d != nil {
		(*d)(channel, []byte(data), isText)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isNetwork reports an error that means Redis was not reached or did not
// answer, as opposed to one Redis answered with.
func isNetwork(err error) bool {
	var re goredis.Error
	return !errors.As(err, &re)
}

// SetLogger sends go-redis's own log lines, which it writes to stderr by
// default, to l at debug level: the Engine logs what matters itself. It
// changes a setting global to the process.
func SetLogger(l *slog.Logger) { goredis.SetLogger(redisLogger{l}) }

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
