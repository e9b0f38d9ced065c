package wsext

import (
	"sync"
	"sync/atomic"
)

const registryShards = 64

// registry holds the open connections of a Server for Count and Each. It is
// sharded so that opening and closing connections on many goroutines do not
// contend on one lock; a slot index kept in each Conn makes removal O(1).
type registry struct {
	count  atomic.Int64
	shards [registryShards]struct {
		mu    sync.Mutex
		conns []*Conn
		_     [40]byte // keep shards on separate cache lines
	}
	snapshots sync.Pool
}

func (r *registry) init() {
	r.snapshots.New = func() any { s := make([]*Conn, 0, 256); return &s }
}

func (r *registry) add(c *Conn) {
	sh := &r.shards[c.uuid%registryShards]
	sh.mu.Lock()
	c.regIdx = len(sh.conns)
	sh.conns = append(sh.conns, c)
	sh.mu.Unlock()
	r.count.Add(1)
}

func (r *registry) remove(c *Conn) {
	sh := &r.shards[c.uuid%registryShards]
	sh.mu.Lock()
	if i := c.regIdx; i >= 0 && i < len(sh.conns) && sh.conns[i] == c {
		last := len(sh.conns) - 1
		sh.conns[i] = sh.conns[last]
		sh.conns[i].regIdx = i
		sh.conns[last] = nil
		sh.conns = sh.conns[:last]
		c.regIdx = -1
		sh.mu.Unlock()
		r.count.Add(-1)
		return
	}
	sh.mu.Unlock()
}

// each calls f for every connection registered when its shard is visited.
// f runs without the shard lock held, on a snapshot, so it may block, close
// connections or open new ones.
func (r *registry) each(f func(c *Conn)) {
	sp := r.snapshots.Get().(*[]*Conn)
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		snap := append((*sp)[:0], sh.conns...)
		sh.mu.Unlock()
		for _, c := range snap {
			f(c)
		}
		clear(snap)
		*sp = snap[:0]
	}
	r.snapshots.Put(sp)
}
