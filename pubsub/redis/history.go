package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"
)

// The payload of a message published with PublishHistory: a version byte
// of its own (payloadHistory, so that it cannot be mistaken for a plain
// one), a flags byte (bit 0: text), the publishing Engine's 8-byte node
// id, the publisher's origin as 8 bytes big-endian, then the offset in
// decimal, ':', the epoch, ':' and the message. Neither the offset nor an
// epoch contains ':'.
const (
	payloadHistory = 2
	histHeadSize   = 2 + originSize + 8
)

// publishScript appends a message to a channel's history and publishes it,
// in one step: Redis runs a script whole, so the offsets a channel's
// messages get are the order in which they are published, and every
// subscriber receives them in offset order.
//
// KEYS: the meta hash (e: epoch, o: top offset), the stream.
// ARGV: a new epoch, used if the channel has none; the stream's MAXLEN;
// the history TTL in ms (0: none); the Redis channel; the payload's head
// (histHeadSize bytes); the message; "1" for text, "0" for binary.
// It returns the message's offset and the channel's epoch.
var publishScript = goredis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
	-- A stream without meta belongs to a lost epoch.
	epoch = ARGV[1]
	redis.call('DEL', KEYS[2])
	redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
local offset = string.format('%d', redis.call('HINCRBY', KEYS[1], 'o', 1))
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*',
	'o', offset, 'd', ARGV[6], 't', ARGV[7], 'n', string.sub(ARGV[5], 3))
local ttl = tonumber(ARGV[3])
if ttl > 0 then
	local t = redis.call('TIME')
	local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
	redis.call('XTRIM', KEYS[2], 'MINID', now - ttl)
	redis.call('PEXPIRE', KEYS[1], ttl)
	redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. offset .. ':' .. epoch .. ':' .. ARGV[6])
return {offset, epoch}
`)

// historyScript reads a channel's top and the messages after an offset.
// The offsets in the stream are contiguous (one XADD per offset, trimmed
// from the oldest), so the top-offset newest entries are the candidates;
// the messages are all there when those are exactly offset+1 to top and,
// with a TTL, none is older than it (the stream is trimmed by age only
// when a message is published).
//
// KEYS: the meta hash, the stream. ARGV: the offset; its epoch; the
// history TTL in ms (0: none).
// It returns the epoch ("" for none), the top, 1 if recovered (else 0),
// then, if recovered, data and text flag of each message, oldest first.
var historyScript = goredis.NewScript(`
local meta = redis.call('HMGET', KEYS[1], 'e', 'o')
local epoch, top = meta[1] or '', meta[2] or '0'
local since, last = tonumber(ARGV[1]), tonumber(top)
-- Offset 0 with epoch "" asks for every message of whatever epoch.
if since > last or (ARGV[2] ~= epoch and not (since == 0 and ARGV[2] == '')) then
	return {epoch, top, 0}
end
local n = last - since
if n == 0 then
	return {epoch, top, 1}
end
if redis.call('XLEN', KEYS[2]) < n then
	return {epoch, top, 0}
end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
if #entries < n then
	return {epoch, top, 0}
end
local cutoff
local ttl = tonumber(ARGV[3])
if ttl > 0 then
	local t = redis.call('TIME')
	cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - ttl
end
local out = {epoch, top, 1}
for i = n, 1, -1 do
	local id, f = entries[i][1], entries[i][2]
	local o, d, t
	for j = 1, #f, 2 do
		if f[j] == 'o' then o = f[j+1] elseif f[j] == 'd' then d = f[j+1] elseif f[j] == 't' then t = f[j+1] end
	end
	if tonumber(o) ~= since + n - i + 1 or not d or not t then
		return {epoch, top, 0}
	end
	if cutoff and tonumber(string.match(id, '^%d+')) < cutoff then
		return {epoch, top, 0}
	end
	out[#out+1] = d
	out[#out+1] = t
end
return out
`)

// StartHistory starts receiving the messages published with
// PublishHistory: deliver gets every one on a channel this process
// subscribes to, this process's own included, in offset order per
// channel. wsext calls it after Start, whose deliver keeps getting the
// messages published with Publish; it may also be called alone.
func (e *Engine) StartHistory(deliver func(channel string, offset uint64, epoch string, origin uint64, data []byte, isText bool)) error {
	if !e.deliverHist.CompareAndSwap(nil, &deliver) {
		return errors.New("redis: history already started")
	}
	e.start()
	return nil
}

// PublishHistory appends a message to channel's history and publishes it
// to every process subscribing, this one included, with one script run on
// Redis (see publishScript). It returns the message's offset and the
// channel's epoch; with no history (Options.HistorySize 0) the message is
// published with offset 0 and epoch "". An error means the message may or
// may not have been kept and published: the script is not sent twice.
// While Redis is known to be down it fails at once, as Publish.
func (e *Engine) PublishHistory(channel string, data []byte, isText bool, origin uint64) (uint64, string, error) {
	if e.ctx.Err() != nil {
		return 0, "", net.ErrClosed
	}
	if e.skip() {
		err := fmt.Errorf("%w: publishing on %q: Redis is down", ErrUnavailable, channel)
		e.publishFailed(channel, err)
		return 0, "", err
	}
	// Through the forwarder's queue, as ForwardHistory: one order for
	// both, and a burst of publishers shares pipelines.
	done := make(chan published, 1)
	if err := e.enqueue(forwarded{channel, data, isText, origin, done}); err != nil {
		return 0, "", err
	}
	t := time.NewTimer(e.opts.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.offset, r.epoch, r.err
	case <-t.C:
		return 0, "", fmt.Errorf("%w: publishing on %q: no answer in %v", ErrUnavailable, channel, e.opts.RequestTimeout)
	case <-e.ctx.Done():
		return 0, "", net.ErrClosed
	}
}

// History calls fn, oldest first, with the kept messages of channel after
// the one at (offset, epoch), and returns the channel's top and whether
// they are exactly the messages after it (wsext.HistoryEngine.History).
// If this Engine subscribes to channel, History first waits for Redis to
// confirm the subscription (awaitSubscribed): then any message is either
// in the stream when History reads it or published after, and delivered.
// After reading, it waits for the subscription connection to catch up
// with the read: the messages up to the top are delivered before History
// returns, never after. It fails after Options.RequestTimeout.
func (e *Engine) History(channel string, offset uint64, epoch string, fn func(offset uint64, data []byte, isText bool)) (uint64, string, bool, error) {
	if e.ctx.Err() != nil {
		return 0, "", false, net.ErrClosed
	}
	if e.opts.HistorySize == 0 {
		return 0, "", offset == 0 && epoch == "", nil
	}
	if e.skip() {
		return 0, "", false, fmt.Errorf("%w: reading the history of %q: Redis is down", ErrUnavailable, channel)
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.RequestTimeout)
	defer cancel()
	if err := e.awaitSubscribed(ctx, channel); err != nil {
		return 0, "", false, err
	}
	res, err := historyScript.Run(ctx, e.client, []string{e.metaKey(channel), e.historyKey(channel)},
		offset, epoch, ttlMillis(e.opts.HistoryTTL)).Slice()
	if err != nil {
		return 0, "", false, e.failed(err, "reading the history of %q", channel)
	}
	e.down.Store(false)
	bad := func() (uint64, string, bool, error) {
		return 0, "", false, fmt.Errorf("redis: reading the history of %q: unexpected answer of %d items", channel, len(res))
	}
	if len(res) < 3 || len(res)%2 != 1 {
		return bad()
	}
	topEpoch, ok1 := res[0].(string)
	topStr, ok2 := res[1].(string)
	recovered, ok3 := res[2].(int64)
	top, err := strconv.ParseUint(topStr, 10, 64)
	if !ok1 || !ok2 || !ok3 || err != nil {
		return bad()
	}
	for i := 3; i < len(res); i += 2 {
		_, ok1 := res[i].(string)
		_, ok2 := res[i+1].(string)
		if !ok1 || !ok2 {
			return bad()
		}
	}
	// Every message up to top was published before the script read the
	// stream, so Redis sent it on the subscription connection before the
	// answer to a PING sent now: once that is back, the messages have
	// been delivered, and none up to top is delivered after History
	// returns, which the Server would take for new.
	if err := e.awaitSubscribed(ctx, channel); err != nil {
		return 0, "", false, err
	}
	if recovered == 0 {
		return top, topEpoch, false, nil
	}
	for i := 3; i < len(res); i += 2 {
		offset++
		fn(offset, []byte(res[i].(string)), res[i+1].(string) == "1")
	}
	return top, topEpoch, true, nil
}

// awaitSubscribed returns once Redis has made this Engine's subscription
// to channel, at once if it has none. It makes the subscription, if
// syncSubs has not yet, then sends a PING with a payload of its own on the
// subscription connection: Redis answers commands in order, so when the
// PONG comes back every SUBSCRIBE and UNSUBSCRIBE sent before has been
// answered, and the confirmations received (active) say whether Redis
// subscribes the connection to channel. Holding subSem keeps syncOnce from
// sending others meanwhile. A connection lost meanwhile means trying
// again on the next one. As the receive goroutine delivers the messages
// before it reads the PONG that follows them, awaitSubscribed also
// returns only once every message Redis published to this Engine before
// the PING has been delivered.
func (e *Engine) awaitSubscribed(ctx context.Context, channel string) error {
	name := e.opts.Prefix + channel
	again := false // Redis answered the PING without the subscription
	for {
		select {
		case e.subSem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the subscription to %q: %w", ErrUnavailable, channel, ctx.Err())
		}
		e.mu.Lock()
		wanted := e.want[channel]
		e.mu.Unlock()
		if !wanted {
			<-e.subSem
			return nil
		}
		e.syncOnce(ctx)
		token := "wsd-sync-" + strconv.FormatUint(e.pingN.Add(1), 10)
		pong := make(chan struct{})
		e.mu.Lock()
		ps, lost := e.ps, e.lost
		e.pings[token] = pong
		e.mu.Unlock()
		var err error
		if again {
			// go-redis keeps the channel for its next connection but may
			// have lost its SUBSCRIBE (a write that failed, then a
			// reconnection); SUBSCRIBE is idempotent on Redis.
			err = ps.Subscribe(ctx, name)
		}
		if err == nil {
			err = ps.Ping(ctx, token)
		}
		<-e.subSem
		if err != nil {
			e.dropPing(token)
			if e.pubsub() != ps && ctx.Err() == nil {
				continue // the health check replaced the connection meanwhile
			}
			return fmt.Errorf("%w: waiting for the subscription to %q: %w", ErrUnavailable, channel, err)
		}
		select {
		case <-pong:
			e.mu.Lock()
			ok := e.active[name] || !e.want[channel]
			e.mu.Unlock()
			if ok {
				return nil
			}
			if again {
				return fmt.Errorf("redis: Redis did not make the subscription to %q", channel)
			}
			again = true
		case <-lost:
			e.dropPing(token)
		case <-ctx.Done():
			e.dropPing(token)
			return fmt.Errorf("%w: waiting for the subscription to %q: %w", ErrUnavailable, channel, ctx.Err())
		}
	}
}

func (e *Engine) dropPing(token string) {
	e.mu.Lock()
	delete(e.pings, token)
	e.mu.Unlock()
}

// positioned is a live message published with PublishHistory, as read
// from its payload.
type positioned struct {
	offset uint64
	epoch  string
	data   string
	isText bool
	node   string // the publishing Engine's id
	origin uint64
}

// parsePositioned reads a PublishHistory payload (see publishArgs): the
// head (version, flags, node id, origin), then <offset>:<epoch>:<data>.
// Anything else, such as another program's message on a shared Redis, is
// not ok.
func parsePositioned(p string) (m positioned, ok bool) {
	if len(p) < histHeadSize || p[1]&^flagText != 0 {
		return m, false
	}
	off, rest, okOff := strings.Cut(p[histHeadSize:], ":")
	epoch, data, okData := strings.Cut(rest, ":")
	offset, err := strconv.ParseUint(off, 10, 64)
	if !okOff || !okData || err != nil {
		return m, false
	}
	m = positioned{offset: offset, epoch: epoch, data: data, isText: p[1]&flagText != 0,
		node: p[2 : 2+originSize], origin: binary.BigEndian.Uint64([]byte(p[2+originSize : histHeadSize]))}
	if m.isText && !utf8.ValidString(data) {
		return m, false
	}
	return m, true
}

// handleHistory delivers one message published with PublishHistory; raw is
// its Redis channel, p its payload.
func (e *Engine) handleHistory(raw, channel, p string) {
	m, ok := parsePositioned(p)
	if !ok {
		e.rlog.Log(slog.LevelDebug, "foreign message", "pub/sub: ignoring a message that wsd did not publish (or text that is not UTF-8)", "channel", raw)
		return
	}
	own := m.node == string(e.node[:])
	if d := e.deliverHist.Load(); d != nil {
		var origin uint64
		if own {
			origin = m.origin
		}
		(*d)(channel, m.offset, m.epoch, origin, []byte(m.data), m.isText)
		return
	}
	// A Server without history (Start) on a Redis it shares with Servers
	// that keep one still gets the other processes' messages.
	if d := e.deliver.Load(); d != nil && !own {
		(*d)(channel, []byte(m.data), m.isText)
	}
}

func (e *Engine) historyKey(channel string) string { return e.opts.Prefix + "history:" + channel }
func (e *Engine) metaKey(channel string) string    { return e.opts.Prefix + "meta:" + channel }

// newEpoch names a new epoch: 64 random bits, so that no channel gets an
// epoch it had before.
func newEpoch() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// ttlMillis is d in whole milliseconds, rounded up so that a positive
// duration stays positive.
func ttlMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// isNoScript reports Redis's answer to EVALSHA for a script it does not
// have (after a restart, say).
func isNoScript(err error) bool {
	return errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")
}
