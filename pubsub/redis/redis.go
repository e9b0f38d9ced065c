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

	"github.com/wsd-server/wsd/internal/ratelog"
)

// DefaultPrefix is put before every channel name on Redis, so that wsd's
// channels do not mix with another application's on a shared Redis.
const DefaultPrefix = "wsd:"

// ErrUnavailable is wrapped by Publish's error when Redis cannot be
// reached: the message reached no other process.
var ErrUnavailable = errors.New("redis: unavailable")

// The payload of a message on Redis (Publish): a version byte, a flags
// byte (bit 0: text), the publishing Engine's 8-byte origin id, then the
// message. PublishHistory's payload has a version of its own
// (payloadHistory).
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

	// HistorySize is how many messages PublishHistory keeps per channel,
	// in a Redis Stream. 0 means none: PublishHistory still delivers, with
	// offset 0 and epoch "", and History answers the top (0, ""). The
	// history options apply to this Engine's publishes and reads: every
	// Engine on one Redis and Prefix should have the same.
	HistorySize int
	// HistoryTTL is how long a kept message stays in the history; 0 means
	// no limit. A channel with no publish for HistoryTTL loses its history
	// altogether, and its next publish starts a new epoch.
	HistoryTTL time.Duration
	// PresenceTTL is how long a process's presence entries last in Redis
	// unless it refreshes them, which it does every PresenceTTL/3: the
	// entries of a process killed without Leave go within PresenceTTL.
	// 0 means 30 seconds.
	PresenceTTL time.Duration
	// RequestTimeout bounds PublishHistory, History and Presence, waits
	// included; 0 means 5 seconds.
	RequestTimeout time.Duration
}

// Engine is a wsext.Engine over Redis PUBLISH and SUBSCRIBE: daemons on
// different hosts that share a Redis share channels. It is also a
// wsext.HistoryEngine, over Redis Streams, and a wsext.PresenceEngine.
type Engine struct {
	opts   Options
	log    *slog.Logger
	rlog   *ratelog.Limiter // the lines that can repeat per publish or message: one a second per kind
	client *goredis.Client
	node   [originSize]byte // this Engine's random id, the origin id of its payloads

	// Subscriptions are made by a goroutine of their own (syncSubs) so
	// that Subscribe and Unsubscribe never wait for Redis: wsext calls
	// them as connections open and close.
	mu   sync.Mutex
	ps   *goredis.PubSub
	want map[string]bool // channels this process subscribes to
	have map[string]bool // channels given to ps
	kick chan struct{}   // wakes syncSubs
	// History must know when Redis has made a subscription (see
	// awaitSubscribed): the receive goroutine keeps which channels the
	// current connection's confirmations say are subscribed, and answers
	// the PINGs that awaitSubscribed sends after its SUBSCRIBEs.
	active map[string]bool          // prefixed channel names, as Redis confirmed them
	pings  map[string]chan struct{} // closed when the PONG of that payload arrives
	lost   chan struct{}            // closed, and replaced, when the connection is lost
	// subSem orders syncOnce's SUBSCRIBEs and UNSUBSCRIBEs with
	// awaitSubscribed's PINGs; a channel rather than a mutex, so that
	// History can give up waiting for it.
	subSem chan struct{}
	pingN  atomic.Uint64

	presence presence
	fwd      forwarder // ForwardHistory's queue and goroutine

	deliver     atomic.Pointer[func(channel string, data []byte, isText bool)]
	deliverHist atomic.Pointer[func(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool)]
	ctx         context.Context
	cancel      context.CancelFunc
	startOnce   sync.Once
	stopped     sync.WaitGroup

	// While Redis is known to be down, Publish, PublishHistory, History
	// and Presence fail at once, but for one attempt a second: a Redis
	// that does not answer would otherwise hold every caller for Timeout.
	down    atomic.Bool
	lastTry atomic.Int64 // unix nanoseconds of the last attempt while down
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
	if opts.HistorySize < 0 {
		opts.HistorySize = 0
	}
	if opts.HistoryTTL < 0 {
		opts.HistoryTTL = 0
	}
	if opts.PresenceTTL <= 0 {
		opts.PresenceTTL = 30 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
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
	// A context's deadline bounds the command too, not only Timeout:
	// RequestTimeout covers History's wait and its script together.
	ro.ContextTimeoutEnabled = true
	e := &Engine{
		opts:   opts,
		log:    opts.Logger,
		rlog:   ratelog.New(opts.Logger, 0),
		client: goredis.NewClient(ro),
		want:   make(map[string]bool),
		have:   make(map[string]bool),
		kick:   make(chan struct{}, 1),
		active: make(map[string]bool),
		pings:  make(map[string]chan struct{}),
		lost:   make(chan struct{}),
		subSem: make(chan struct{}, 1),
	}
	e.presence.init()
	crand.Read(e.node[:])
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.ps = e.client.Subscribe(e.ctx)
	return e, nil
}

// Start starts receiving: deliver gets every message another process
// published with Publish on a channel this one subscribes to.
func (e *Engine) Start(deliver func(channel string, data []byte, isText bool)) error {
	if !e.deliver.CompareAndSwap(nil, &deliver) {
		return errors.New("redis: engine already started")
	}
	e.start()
	return nil
}

// start starts the Engine's goroutines, the first time.
func (e *Engine) start() {
	e.startOnce.Do(func() {
		e.stopped.Add(3)
		go e.receive()
		go e.syncSubs()
		go e.presenceLoop()
	})
}

// Publish sends a message to the other processes with one PUBLISH, waiting
// for Redis's answer: one publisher's messages on a channel reach Redis,
// and so every subscriber, in order. When Redis cannot be reached the error
// wraps ErrUnavailable, the failure is logged, and the message is lost.
func (e *Engine) Publish(channel string, data []byte, isText bool) error {
	if e.skip() {
		err := fmt.Errorf("%w: publishing on %q: Redis is down", ErrUnavailable, channel)
		e.publishFailed(channel, err)
		return err
	}
	payload := make([]byte, headerSize+len(data))
	payload[0] = payloadVersion
	if isText {
		payload[1] = flagText
	}
	copy(payload[2:], e.node[:])
	copy(payload[headerSize:], data)
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
	defer cancel()
	if err := e.client.Publish(ctx, e.opts.Prefix+channel, payload).Err(); err != nil {
		e.publishFailed(channel, err)
		return e.failed(err, "publishing on %q", channel)
	}
	e.down.Store(false)
	return nil
}

// skip reports whether a request should fail at once because Redis is
// known to be down; one request a second is let through to find out
// whether it is back.
func (e *Engine) skip() bool {
	if !e.down.Load() {
		return false
	}
	now := time.Now().UnixNano()
	last := e.lastTry.Load()
	return now-last < int64(time.Second) || !e.lastTry.CompareAndSwap(last, now)
}

// failed wraps the error of a request to Redis, what (a format with args)
// saying which; a network error marks Redis down, and is wrapped with
// ErrUnavailable.
func (e *Engine) failed(err error, what string, args ...any) error {
	what = fmt.Sprintf(what, args...)
	if isNetwork(err) {
		e.lastTry.Store(time.Now().UnixNano())
		e.down.Store(true)
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("redis: %s: %w", what, err)
}

// publishFailed logs failed publishes: the first at once, then at most one
// line a second, which counts the others ("suppressed").
func (e *Engine) publishFailed(channel string, err error) {
	e.rlog.Error("publish", "pub/sub: publish to Redis failed; messages lost", "channel", channel, "err", err)
}

// Subscribe subscribes to channel on Redis. It does not wait: the
// subscription is made in the background, and made again whenever the
// connection to Redis is.
func (e *Engine) Subscribe(channel string) error {
	return e.setWant(channel, true)
}

// Unsubscribe ends the subscription to channel, in the background.
func (e *Engine) Unsubscribe(channel string) error {
	return e.setWant(channel, false)
}

func (e *Engine) setWant(channel string, on bool) error {
	if e.ctx.Err() != nil {
		return net.ErrClosed
	}
	e.mu.Lock()
	if on {
		e.want[channel] = true
	} else {
		delete(e.want, channel)
	}
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default: // syncSubs is due to run already
	}
	return nil
}

// syncSubs subscribes and unsubscribes on Redis until the subscription
// connection's channels are the ones wanted, each time it is kicked.
// go-redis records a subscription even when Redis is down, and makes it
// again on the next connection.
func (e *Engine) syncSubs() {
	defer e.stopped.Done()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.kick:
		}
		select {
		case <-e.ctx.Done():
			return
		case e.subSem <- struct{}{}:
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
		e.syncOnce(ctx)
		cancel()
		<-e.subSem
	}
}

// syncOnce gives the subscription connection the channels wanted that it
// lacks and takes away those no longer wanted. The caller holds subSem.
func (e *Engine) syncOnce(ctx context.Context) {
	e.mu.Lock()
	var add, del []string
	for ch := range e.want {
		if !e.have[ch] {
			add = append(add, e.opts.Prefix+ch)
			e.have[ch] = true
		}
	}
	for ch := range e.have {
		if !e.want[ch] {
			del = append(del, e.opts.Prefix+ch)
			delete(e.have, ch)
		}
	}
	ps := e.ps
	e.mu.Unlock()
	if len(add) > 0 {
		if err := ps.Subscribe(ctx, add...); err != nil {
			e.rlog.Log(slog.LevelDebug, "subscribe", "pub/sub: subscribing on Redis; again on reconnection", "channels", len(add), "err", err)
		}
	}
	if len(del) > 0 {
		if err := ps.Unsubscribe(ctx, del...); err != nil {
			// A failed connection is replaced without them.
			e.rlog.Log(slog.LevelDebug, "unsubscribe", "pub/sub: unsubscribing on Redis", "channels", len(del), "err", err)
		}
	}
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
	e.stopped.Wait()
	// After presenceLoop has stopped, so that no refresh follows.
	e.leaveAll()
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
	defer e.stopped.Done()
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
			if isTimeout(err) && !down && !pinged {
				// Quiet, or dead: a ping tells, within another interval.
				pinged = true
				e.pubsub().Ping(e.ctx)
				continue
			}
			// The connection is gone, or about to be replaced, and its
			// subscriptions with it.
			e.connLost()
			switch {
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
			e.down.Store(false)
			e.mu.Lock()
			n := len(e.have)
			e.mu.Unlock()
			e.log.Info("pub/sub: reconnected to Redis; channels resubscribed", "channels", n)
			// A Redis that restarted has lost the presence entries.
			e.presence.wake(e.presence.refresh)
		}
		switch m := m.(type) {
		case *goredis.Message:
			e.handle(m)
		case *goredis.Subscription:
			e.confirmed(m)
		case *goredis.Pong:
			e.ponged(m.Payload)
		}
	}
}

// confirmed records a subscription or unsubscription that Redis has made
// on the current connection.
func (e *Engine) confirmed(s *goredis.Subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch s.Kind {
	case "subscribe":
		e.active[s.Channel] = true
	case "unsubscribe":
		delete(e.active, s.Channel)
	}
}

// ponged wakes the awaitSubscribed call whose PING this answers.
func (e *Engine) ponged(payload string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch, ok := e.pings[payload]; ok {
		close(ch)
		delete(e.pings, payload)
	}
}

// connLost forgets the subscriptions of a connection that is gone, and
// wakes the awaitSubscribed calls waiting for an answer on it.
func (e *Engine) connLost() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.active)
	close(e.lost)
	e.lost = make(chan struct{})
}

// replace swaps the subscription connection for a new one subscribed to
// the same channels: go-redis does not give up on a connection that is
// open but silent.
func (e *Engine) replace() {
	e.mu.Lock()
	old := e.ps
	e.ps = e.client.Subscribe(e.ctx)
	names := make([]string, 0, len(e.have))
	for ch := range e.have {
		names = append(names, e.opts.Prefix+ch)
	}
	ps := e.ps
	e.mu.Unlock()
	old.Close()
	if len(names) > 0 {
		ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
		ps.Subscribe(ctx, names...) // recorded even if it fails now
		cancel()
	}
}

// handle delivers one message from Redis, unless this Engine published it
// without history or it is not one of wsd's.
func (e *Engine) handle(m *goredis.Message) {
	channel, ok := strings.CutPrefix(m.Channel, e.opts.Prefix)
	p := m.Payload
	if ok && len(p) > 0 && p[0] == payloadHistory {
		e.handleHistory(m.Channel, channel, p)
		return
	}
	if !ok || len(p) < headerSize || p[0] != payloadVersion || p[1]&^flagText != 0 {
		e.rlog.Log(slog.LevelDebug, "foreign message", "pub/sub: ignoring a message that wsd did not publish", "channel", m.Channel)
		return
	}
	if p[2:headerSize] == string(e.node[:]) {
		return // wsext delivered it here already
	}
	isText := p[1]&flagText != 0
	data := p[headerSize:]
	if isText && !utf8.ValidString(data) {
		e.rlog.Log(slog.LevelDebug, "bad utf-8", "pub/sub: ignoring a text message that is not UTF-8", "channel", m.Channel)
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
// changes a setting global to the process. go-redis logs each failed dial,
// so the lines are bounded: one a second per format string (a constant of
// go-redis's), with the count of the others.
func SetLogger(l *slog.Logger) { goredis.SetLogger(redisLogger{l, ratelog.New(l, 0)}) }

type redisLogger struct {
	l  *slog.Logger
	rl *ratelog.Limiter
}

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if r.l.Enabled(ctx, slog.LevelDebug) {
		r.rl.Log(slog.LevelDebug, format, "go-redis: "+fmt.Sprintf(format, v...))
	}
}
