package redis

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Presence writes wait in a map coalesced by (channel, client); beyond
// maxPresencePending of them a new one is dropped, which presence survives
// (see pend). presenceBatch clients go in one script run, and
// presencePipeline runs in one pipeline.
const (
	maxPresencePending = 1 << 16
	presenceBatch      = 256
	presencePipeline   = 64
)

// presenceExpire is the Lua both presence scripts start with: expire
// removes the entries of zset whose expiry (the score, unix ms) has
// passed, and their info in hash. Its time is Redis's, so that the hosts'
// clocks do not matter.
const presenceExpire = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function expire(zset, hash)
	while true do
		local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, 500)
		if #gone == 0 then
			return
		end
		redis.call('ZREM', zset, unpack(gone))
		redis.call('HDEL', hash, unpack(gone))
	end
end
expire(KEYS[1], KEYS[2])
`

// presenceWriteScript lists and unlists clients in a channel's presence.
// KEYS: the sorted set (client → expiry), the hash (client → info).
// ARGV: the TTL in ms; the number n of clients to list; n pairs client,
// info; then the clients to unlist.
var presenceWriteScript = goredis.NewScript(presenceExpire + `
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
for i = 3, 2 + 2 * n, 2 do
	redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
	redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1])
end
for i = 3 + 2 * n, #ARGV do
	redis.call('ZREM', KEYS[1], ARGV[i])
	redis.call('HDEL', KEYS[2], ARGV[i])
end
-- The keys go when their last entry expires (Engines may have different
-- TTLs); info without an entry is an orphan.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 0 then
	redis.call('DEL', KEYS[2])
else
	redis.call('PEXPIREAT', KEYS[1], last[2])
	redis.call('PEXPIREAT', KEYS[2], last[2])
end
return 0
`)

// presenceReadScript returns client and info of every live entry in a
// channel's presence, flat. KEYS as presenceWriteScript's.
var presenceReadScript = goredis.NewScript(presenceExpire + `
local out = {}
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for i = 1, #members, 500 do
	local chunk = {}
	for j = i, math.min(i + 499, #members) do
		chunk[#chunk+1] = members[j]
	end
	local infos = redis.call('HMGET', KEYS[2], unpack(chunk))
	for j = 1, #chunk do
		out[#out+1] = chunk[j]
		out[#out+1] = infos[j] or ''
	end
end
return out
`)

// presence is an Engine's own presence entries, the truth that Redis is
// kept up to date with: Join and Leave change them here and leave the
// writes to presenceLoop, which also refreshes every entry every
// PresenceTTL/3 and after a reconnection to Redis.
type presence struct {
	mu     sync.Mutex
	local  map[string]map[string]string // channel → client → info
	dirty  map[string]map[string]uint64 // channel → client → seq of its last change not yet written
	n      int                          // entries in dirty
	seq    uint64
	closed bool

	kick    chan struct{} // dirty has entries
	refresh chan struct{} // write every entry now
}

func (p *presence) init() {
	p.local = make(map[string]map[string]string)
	p.dirty = make(map[string]map[string]uint64)
	p.kick = make(chan struct{}, 1)
	p.refresh = make(chan struct{}, 1)
}

func (p *presence) wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default: // due already
	}
}

// Join lists client in channel's presence, with info. It does not wait for
// Redis: the entry is written in the background, and written again every
// PresenceTTL/3 while it lasts.
func (e *Engine) Join(channel, client, info string) error {
	p := &e.presence
	p.mu.Lock()
	if p.closed || e.ctx.Err() != nil {
		p.mu.Unlock()
		return net.ErrClosed
	}
	m := p.local[channel]
	if m == nil {
		m = make(map[string]string)
		p.local[channel] = m
	}
	m[client] = info
	e.pend(channel, client)
	p.mu.Unlock()
	p.wake(p.kick)
	return nil
}

// Leave ends client's listing in channel's presence, in the background.
func (e *Engine) Leave(channel, client string) error {
	p := &e.presence
	p.mu.Lock()
	if p.closed || e.ctx.Err() != nil {
		p.mu.Unlock()
		return net.ErrClosed
	}
	m := p.local[channel]
	if _, ok := m[client]; !ok {
		p.mu.Unlock()
		return nil
	}
	delete(m, client)
	if len(m) == 0 {
		delete(p.local, channel)
	}
	e.pend(channel, client)
	p.mu.Unlock()
	p.wake(p.kick)
	return nil
}

// pend records that client's entry in channel changed and is to be
// written. With maxPresencePending writes waiting (Redis down long, with
// many clients coming and going) the change is not recorded: a join is
// written by the next refresh all the same, and the entry of a leave that
// is never written expires within PresenceTTL, as nothing refreshes it.
// The caller holds presence.mu.
func (e *Engine) pend(channel, client string) {
	p := &e.presence
	p.seq++
	d := p.dirty[channel]
	if _, ok := d[client]; ok {
		d[client] = p.seq
		return
	}
	if p.n >= maxPresencePending {
		e.rlog.Log(slog.LevelWarn, "presence pending", "pub/sub: too many presence changes wait for Redis; leaves are late, by PresenceTTL at most", "pending", p.n)
		return
	}
	if d == nil {
		d = make(map[string]uint64)
		p.dirty[channel] = d
	}
	d[client] = p.seq
	p.n++
}

// Presence returns the info of every client listed in channel, by client,
// after dropping the expired entries (presenceReadScript). This process's
// own changes not yet written are applied to the answer, so that a Join is
// seen at once here. It fails after Options.RequestTimeout.
func (e *Engine) Presence(channel string) (map[string]string, error) {
	if e.ctx.Err() != nil {
		return nil, net.ErrClosed
	}
	if e.skip() {
		return nil, fmt.Errorf("%w: reading the presence of %q: Redis is down", ErrUnavailable, channel)
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.RequestTimeout)
	defer cancel()
	res, err := presenceReadScript.Run(ctx, e.client, e.presenceKeys(channel)).StringSlice()
	if err != nil {
		return nil, e.failed(err, "reading the presence of %q", channel)
	}
	e.down.Store(false)
	out := make(map[string]string, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		out[res[i]] = res[i+1]
	}
	p := &e.presence
	p.mu.Lock()
	local := p.local[channel]
	for client := range p.dirty[channel] {
		if _, ok := local[client]; !ok {
			delete(out, client)
		}
	}
	for client, info := range local {
		out[client] = info
	}
	p.mu.Unlock()
	return out, nil
}

func (e *Engine) presenceKeys(channel string) []string {
	return []string{e.opts.Prefix + "presence:" + channel, e.opts.Prefix + "presence-info:" + channel}
}

// presenceLoop writes presence changes as they come, and every entry
// every PresenceTTL/3, and when the receive loop reconnects to Redis. A
// write that fails is tried again at the next of these.
func (e *Engine) presenceLoop() {
	defer e.stopped.Done()
	p := &e.presence
	tick := time.NewTicker(max(e.opts.PresenceTTL/3, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-p.kick:
			e.flushPresence()
		case <-tick.C:
			e.flushPresence()
			e.refreshPresence()
		case <-p.refresh:
			e.flushPresence()
			e.refreshPresence()
		}
	}
}

// presenceOp is the writes for one channel.
type presenceOp struct {
	channel string
	list    []string // client, info, client, info…
	unlist  []string
}

// flushPresence writes the changes pending; those that change meanwhile
// stay pending.
func (e *Engine) flushPresence() {
	p := &e.presence
	p.mu.Lock()
	if p.n == 0 {
		p.mu.Unlock()
		return
	}
	snap := make(map[string]map[string]uint64, len(p.dirty))
	ops := make([]presenceOp, 0, len(p.dirty))
	for channel, d := range p.dirty {
		op := presenceOp{channel: channel}
		for client := range d {
			if info, ok := p.local[channel][client]; ok {
				op.list = append(op.list, client, info)
			} else {
				op.unlist = append(op.unlist, client)
			}
		}
		snap[channel] = maps.Clone(d)
		ops = append(ops, op)
	}
	p.mu.Unlock()
	if err := e.writePresence(e.ctx, ops); err != nil {
		e.presenceFailed(err)
		return
	}
	p.mu.Lock()
	for channel, s := range snap {
		d := p.dirty[channel]
		for client, seq := range s {
			if d[client] == seq {
				delete(d, client)
				p.n--
			}
		}
		if len(d) == 0 {
			delete(p.dirty, channel)
		}
	}
	p.mu.Unlock()
}

// refreshPresence writes every entry again, with a new expiry.
func (e *Engine) refreshPresence() {
	ops := e.localOps(false)
	if len(ops) == 0 {
		return
	}
	if err := e.writePresence(e.ctx, ops); err != nil {
		e.presenceFailed(err)
	}
}

// localOps lists every entry of this Engine, to write (unlist false) or
// to remove (unlist true).
func (e *Engine) localOps(unlist bool) []presenceOp {
	p := &e.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	ops := make([]presenceOp, 0, len(p.local))
	for channel, m := range p.local {
		op := presenceOp{channel: channel}
		for client, info := range m {
			if unlist {
				op.unlist = append(op.unlist, client)
			} else {
				op.list = append(op.list, client, info)
			}
		}
		ops = append(ops, op)
	}
	return ops
}

func (e *Engine) presenceFailed(err error) {
	e.rlog.Log(slog.LevelWarn, "presence", "pub/sub: writing presence to Redis failed; trying again", "err", err)
}

// leaveAll removes this Engine's entries from Redis, for Close: a clean
// exit leaves no entry to expire. It tries once, briefly.
func (e *Engine) leaveAll() {
	p := &e.presence
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	ops := e.localOps(true)
	if len(ops) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(e.opts.Timeout, time.Second))
	defer cancel()
	if err := e.writePresence(ctx, ops); err != nil {
		e.log.Warn("pub/sub: removing presence entries from Redis on close failed; they expire", "err", err, "within", e.opts.PresenceTTL)
	}
}

// writePresence runs presenceWriteScript for ops, presenceBatch clients a
// run, presencePipeline runs a pipeline, each pipeline within
// RequestTimeout. The writes are idempotent: a pipeline that finds the
// script missing on Redis (restarted) loads it and goes again.
func (e *Engine) writePresence(parent context.Context, ops []presenceOp) error {
	ttl := ttlMillis(e.opts.PresenceTTL)
	var runs [][]any // keys, then args
	for _, op := range ops {
		list, unlist := op.list, op.unlist
		for len(list) > 0 || len(unlist) > 0 {
			nl := min(len(list)/2, presenceBatch)
			nu := min(len(unlist), presenceBatch-nl)
			args := make([]any, 0, 2+2*nl+nu)
			args = append(args, ttl, nl)
			for _, s := range list[:2*nl] {
				args = append(args, s)
			}
			for _, s := range unlist[:nu] {
				args = append(args, s)
			}
			list, unlist = list[2*nl:], unlist[nu:]
			runs = append(runs, append([]any{op.channel}, args...))
		}
	}
	for len(runs) > 0 {
		batch := runs[:min(len(runs), presencePipeline)]
		runs = runs[len(batch):]
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(parent, e.opts.RequestTimeout)
			_, err := e.client.Pipelined(ctx, func(pl goredis.Pipeliner) error {
				for _, r := range batch {
					presenceWriteScript.EvalSha(ctx, pl, e.presenceKeys(r[0].(string)), r[1:]...)
				}
				return nil
			})
			if err != nil && attempt == 0 && isNoScript(err) {
				err = presenceWriteScript.Load(ctx, e.client).Err()
				cancel()
				if err == nil {
					continue
				}
			} else {
				cancel()
			}
			if err != nil {
				return fmt.Errorf("redis: writing presence: %w", err)
			}
			break
		}
	}
	return nil
}
