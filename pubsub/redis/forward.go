package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// ErrBacklog is returned by ForwardHistory when more than maxForwardBytes
// of its publishes wait for Redis: Redis is slower than the publishers.
var ErrBacklog = errors.New("redis: too many publishes waiting for Redis")

// maxForwardBytes bounds the publishes that wait in a forwarder, and
// maxForwardBatch how many go in one pipeline.
const (
	maxForwardBytes = 16 << 20
	maxForwardBatch = 256
)

// forwarder sends ForwardHistory's publishes to Redis from one goroutine,
// in the order they were queued, many to a pipeline: a publisher does not
// wait for Redis, and one connection's round trips carry a burst.
type forwarder struct {
	once  sync.Once
	mu    sync.Mutex
	queue []forwarded
	bytes int
	wake  chan struct{}
}

type forwarded struct {
	channel string
	data    []byte // a copy, once queued
	isText  bool
	origin  uint64
	done    chan<- published // PublishHistory's answer; nil for ForwardHistory
}

// published is the outcome of one publish.
type published struct {
	offset uint64
	epoch  string
	err    error
}

// ForwardHistory publishes like PublishHistory without waiting for Redis:
// the message is queued (copied) for a goroutine that sends the queue in
// order, in pipelines. It fails at once while Redis is known to be down,
// and with ErrBacklog when maxForwardBytes already wait; a failure after
// it returned is logged (rate limited), as Publish's. See
// wsext.HistoryForwarder.
func (e *Engine) ForwardHistory(channel string, data []byte, isText bool, origin uint64) error {
	if e.ctx.Err() != nil {
		return errors.New("redis: engine closed")
	}
	if e.skip() {
		err := fmt.Errorf("%w: publishing on %q: Redis is down", ErrUnavailable, channel)
		e.publishFailed(channel, err)
		return err
	}
	return e.enqueue(forwarded{channel, data, isText, origin, nil})
}

// enqueue queues a publish (copying its data) for forwardLoop, which it
// starts the first time.
func (e *Engine) enqueue(m forwarded) error {
	f := &e.fwd
	f.once.Do(func() {
		f.wake = make(chan struct{}, 1)
		e.stopped.Add(1)
		go e.forwardLoop()
	})
	f.mu.Lock()
	if f.bytes > 0 && f.bytes+len(m.data) > maxForwardBytes {
		f.mu.Unlock()
		return fmt.Errorf("%w (%d bytes)", ErrBacklog, maxForwardBytes)
	}
	m.data = append([]byte(nil), m.data...)
	f.queue = append(f.queue, m)
	f.bytes += len(m.data)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

// forwardLoop sends the queue until Close.
func (e *Engine) forwardLoop() {
	defer e.stopped.Done()
	f := &e.fwd
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-f.wake:
		}
		for {
			f.mu.Lock()
			n := min(len(f.queue), maxForwardBatch)
			batch := f.queue[:n:n]
			f.queue = f.queue[n:]
			for _, m := range batch {
				f.bytes -= len(m.data)
			}
			if len(f.queue) == 0 {
				f.queue = nil // let the burst's array go
			}
			f.mu.Unlock()
			if n == 0 {
				break
			}
			e.forwardBatch(batch)
		}
	}
}

// forwardBatch publishes each message, in order, in one pipeline: the
// publish script by its SHA, or, without history, a plain PUBLISH of the
// positioned payload with offset 0. After a Redis restart has emptied its
// script cache every script call fails with NOSCRIPT, and the batch goes
// again after loading it (none of them ran).
func (e *Engine) forwardBatch(batch []forwarded) {
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.RequestTimeout)
	defer cancel()
	var cmds []goredis.Cmder
	var err error
	for attempt := 0; ; attempt++ {
		cmds, err = e.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, m := range batch {
				keys, args := e.publishArgs(m.channel, m.data, m.isText, m.origin)
				if e.opts.HistorySize == 0 {
					head := args[4].([]byte)
					payload := append(append(append(make([]byte, 0, len(head)+3+len(m.data)), head...), "0::"...), m.data...)
					p.Publish(ctx, e.opts.Prefix+m.channel, payload)
				} else {
					publishScript.EvalSha(ctx, p, keys, args...)
				}
			}
			return nil
		})
		if err != nil && attempt == 0 && allNoScript(cmds) {
			if publishScript.Load(ctx, e.client).Err() == nil {
				continue
			}
		}
		break
	}
	if err == nil {
		e.down.Store(false)
	}
	for i, m := range batch {
		var r published
		switch {
		case i < len(cmds) && cmds[i].Err() == nil:
			r = parsePublished(m.channel, cmds[i])
		case i < len(cmds):
			r.err = e.failed(cmds[i].Err(), "publishing on %q", m.channel)
		default:
			r.err = e.failed(err, "publishing on %q", m.channel)
		}
		if r.err != nil {
			e.publishFailed(m.channel, r.err)
		}
		if m.done != nil {
			m.done <- r
		}
	}
}

// allNoScript reports whether every command of a pipeline failed for want
// of the script: then none ran, and the pipeline may go again.
func allNoScript(cmds []goredis.Cmder) bool {
	for _, c := range cmds {
		if !isNoScript(c.Err()) {
			return false
		}
	}
	return len(cmds) > 0
}

// parsePublished reads the publish script's answer, {offset, epoch}; a
// plain PUBLISH (no history) has offset 0 and epoch "".
func parsePublished(channel string, c goredis.Cmder) published {
	cmd, ok := c.(*goredis.Cmd)
	if !ok {
		return published{}
	}
	res, err := cmd.Slice()
	if err == nil && len(res) == 2 {
		off, ok1 := res[0].(string)
		epoch, ok2 := res[1].(string)
		if offset, err := strconv.ParseUint(off, 10, 64); ok1 && ok2 && err == nil {
			return published{offset: offset, epoch: epoch}
		}
	}
	return published{err: fmt.Errorf("redis: publishing on %q: unexpected answer %v (%v)", channel, res, err)}
}

// publishArgs are the publish script's keys and arguments for a message.
func (e *Engine) publishArgs(channel string, data []byte, isText bool, origin uint64) ([]string, []any) {
	var head [histHeadSize]byte
	head[0] = payloadHistory
	text := "0"
	if isText {
		head[1] = flagText
		text = "1"
	}
	copy(head[2:], e.node[:])
	binary.BigEndian.PutUint64(head[2+originSize:], origin)
	return []string{e.metaKey(channel), e.historyKey(channel)},
		[]any{newEpoch(), e.opts.HistorySize, ttlMillis(e.opts.HistoryTTL), e.opts.Prefix + channel, head[:], data, text}
}
