package poller

import (
	"sync"
	"sync/atomic"
	"time"
)

// Handler is what a loop runs for a registered descriptor. Its Entry
// carries the poller's state for it.
type Handler[E any] interface {
	*E
	// PollEntry returns the handler's Entry, embedded in it.
	PollEntry() *Entry
	// Turn runs when the descriptor is ready or the handler was scheduled;
	// buf is the loop's read buffer, valid during the call. It reports
	// whether work remains, for another turn after the loop's other
	// handlers had theirs.
	Turn(buf []byte) (more bool)
}

// Entry is a handler's state in the poller; the zero value is an
// unregistered handler.
type Entry struct {
	loop     atomic.Int32 // index of the owning loop + 1; 0 before Add
	sched    atomic.Int32 // on the loop's ready list: idle, listed, listed again
	readable atomic.Bool  // the loop saw bytes (or an end) to read
	hangup   atomic.Bool  // the loop saw the peer's end: read until EOF
}

// TakeReadable reports whether the loop saw the descriptor readable since
// the last call, and clears that.
func (e *Entry) TakeReadable() bool { return e.readable.Swap(false) }

// SetReadable marks the descriptor readable again, for a turn that left
// bytes unread.
func (e *Entry) SetReadable() { e.readable.Store(true) }

// Hangup reports whether the loop saw the peer's end: a short read then
// does not mean the socket is empty.
func (e *Entry) Hangup() bool { return e.hangup.Load() }

// Registered reports whether the handler was added to a poller.
func (e *Entry) Registered() bool { return e.loop.Load() > 0 }

// StallCheck is how often the poller looks for a loop stuck in one turn.
const StallCheck = 100 * time.Millisecond

// Scheduling states of an Entry.
const (
	schedIdle int32 = iota
	schedListed
	schedAgain
)

// Poller is a set of event loops for handlers of type H (a *E).
type Poller[E any, H Handler[E]] struct {
	loops []*loop[E, H]
	table fdTable[E]
	// OnStall is told of a loop handed to a new goroutine because the
	// handler h kept its goroutine for over StallCheck. Set it before the
	// first Add.
	OnStall func(loop int, h H)
}

// loop is one event loop: an epoll set, the goroutine that runs it, and
// the list of its handlers that other goroutines have work for.
type loop[E any, H Handler[E]] struct {
	epfd   int
	wakefd int // eventfd: a write wakes the loop from epoll_wait

	mu       sync.Mutex
	ready    []H
	spare    []H
	sleeping atomic.Bool // in a blocking epoll_wait: a scheduler must wake it

	// primary is the goroutine that runs the loop; one whose handler
	// blocks is replaced by watch and leaves when its turn ends.
	primary atomic.Pointer[runner[E]]
}

// runner is one goroutine running a loop, with what watch needs to see it
// stuck: turns counts its turns, turn names the handler in one.
type runner[E any] struct {
	turns atomic.Uint64
	turn  atomic.Pointer[E]
	seen  uint64 // turns at watch's last look; watch's own
	stuck int    // watch's looks in a row that found the same turn; watch's own
}

// Schedule gives h a turn on its loop soon, from any goroutine: to send
// what it queued, run work addressed to it, or read again. It is a no-op
// for a handler that was never added.
func (p *Poller[E, H]) Schedule(h H) {
	e := h.PollEntry()
	idx := e.loop.Load()
	if idx == 0 {
		return
	}
	l := p.loops[idx-1]
	for {
		switch e.sched.Load() {
		case schedIdle:
			if e.sched.CompareAndSwap(schedIdle, schedListed) {
				l.list(h)
				return
			}
		case schedListed:
			if e.sched.CompareAndSwap(schedListed, schedAgain) {
				return
			}
		default:
			return
		}
	}
}

func (l *loop[E, H]) list(h H) {
	l.mu.Lock()
	l.ready = append(l.ready, h)
	l.mu.Unlock()
	if l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
		l.wake()
	}
}

func (l *loop[E, H]) hasReady() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ready) > 0
}

// runReady gives a turn to every handler scheduled from elsewhere.
func (l *loop[E, H]) runReady(r *runner[E], buf []byte) {
	l.mu.Lock()
	batch := l.ready
	l.ready, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	for i, h := range batch {
		batch[i] = nil
		l.turnOf(r, h, buf, true)
	}
	l.mu.Lock()
	if l.spare == nil && cap(batch) <= 1<<16 {
		l.spare = batch[:0]
	}
	l.mu.Unlock()
}

// turnOf runs one turn of h. listed says the turn came from the ready
// list, whose scheduling state it then settles.
func (l *loop[E, H]) turnOf(r *runner[E], h H, buf []byte, listed bool) {
	r.turn.Store((*E)(h))
	more := h.Turn(buf)
	r.turn.Store(nil)
	r.turns.Add(1)
	e := h.PollEntry()
	if !listed {
		if more {
			l.schedule(h, e)
		}
		return
	}
	if more || !e.sched.CompareAndSwap(schedListed, schedIdle) {
		// Work came during the turn, or bytes remain: the handler goes
		// to the back of the list so that the others get their turn.
		e.sched.Store(schedListed)
		l.list(h)
	}
}

func (l *loop[E, H]) schedule(h H, e *Entry) {
	if e.sched.CompareAndSwap(schedIdle, schedListed) {
		l.list(h)
	} else {
		e.sched.CompareAndSwap(schedListed, schedAgain)
	}
}

// watch finds loops whose goroutine is stuck in one turn and gives each a
// new goroutine. It runs for the life of the process, like the loops.
func (p *Poller[E, H]) watch() {
	tick := time.NewTicker(StallCheck)
	defer tick.Stop()
	for range tick.C {
		for i, l := range p.loops {
			r := l.primary.Load()
			turns, h := r.turns.Load(), r.turn.Load()
			if h == nil || turns != r.seen {
				r.seen, r.stuck = turns, 0
				continue
			}
			if r.stuck++; r.stuck != 1 {
				continue
			}
			nr := &runner[E]{}
			l.primary.Store(nr)
			go l.run(p, nr)
			if p.OnStall != nil {
				p.OnStall(i, H(h))
			}
		}
	}
}

// fdTable maps descriptors to handlers without locks on the lookup path:
// a fixed directory of lazily made chunks.
type fdTable[E any] struct {
	mu     sync.Mutex
	chunks [1 << 12]atomic.Pointer[[1 << 12]atomic.Pointer[E]]
}

func (t *fdTable[E]) get(fd int) *E {
	if fd < 0 || fd >= len(t.chunks)<<12 {
		return nil
	}
	ch := t.chunks[fd>>12].Load()
	if ch == nil {
		return nil
	}
	return ch[fd&(1<<12-1)].Load()
}

func (t *fdTable[E]) set(fd int, h *E) bool {
	if fd < 0 || fd >= len(t.chunks)<<12 {
		return false
	}
	ch := t.chunks[fd>>12].Load()
	if ch == nil {
		t.mu.Lock()
		if ch = t.chunks[fd>>12].Load(); ch == nil {
			ch = new([1 << 12]atomic.Pointer[E])
			t.chunks[fd>>12].Store(ch)
		}
		t.mu.Unlock()
	}
	ch[fd&(1<<12-1)].Store(h)
	return true
}
