package wsext

import (
	"sync"
	"sync/atomic"
)

// Each is deferred per connection, as the original each() was: a call
// queues its task to every target, and each target runs it in its own
// turn, under its cbMu like any callback. A connection busy in a callback
// therefore delays only its own tasks, and the tasks of one target run in
// the order of the Each calls that queued them.
//
// Bounds (the resource model in doc.go):
//   - A connection may have eachWindow of its Each calls unfinished; at
//     the window it is read no further until one finishes, so a client
//     that broadcasts faster than its recipients take the work is slowed by
//     TCP rather than buffered.
//   - A connection holds at most maxTasks queued tasks; one that falls
//     further behind (its callbacks block, or the process is overloaded by
//     every other connection's broadcasts) is closed with 1008, and the
//     tasks it will not run count as done, so every onFinish still comes.
const (
	eachWindow = 16
	maxTasks   = 4096
)

type eachJob struct {
	originator *Conn
	task       func(ws *Conn, arg any)
	arg        any
	onFinish   func(originator *Conn, arg any)
	srv        *Server
	pending    atomic.Int64 // targets whose task has not run, plus a guard while queueing
}

// taskEntry is one piece of Each work queued to a connection: the job's
// task, or, queued to the originator, the job's onFinish.
type taskEntry struct {
	job    *eachJob
	finish bool
}

// taskLists recycles task queues so that queueing a broadcast to an idle
// connection allocates nothing, and an idle connection holds no queue.
var taskLists = sync.Pool{New: func() any { l := make([]taskEntry, 0, 16); return &l }}

// maxPooledTasks keeps a queue that grew in a burst out of the pool.
const maxPooledTasks = 1024

// Each runs task(ws, arg) for every open connection of the server in this
// process except originator (every one when originator is nil), then
// onFinish(originator, arg) once, after every task ran. It returns at once.
//
// Each task runs in its target's turn, like a callback: never at the same
// time as another callback or task of that connection, and the tasks of
// several Each calls reach one connection in call order, so messages
// broadcast with Each arrive in order. A connection busy in a long
// callback delays only its own task. onFinish runs in the originator's
// turn (on the goroutine of the last task when originator is nil, or when
// it has closed), so a callback of the originator must not wait for its
// own Each to finish: it would wait for itself. onFinish may be nil.
//
// An originator with eachWindow (16) unfinished Each calls is read no
// further until one finishes, and a connection with 4096 tasks queued is
// closed with ClosePolicyViolation: see the resource model in the package
// documentation.
func (s *Server) Each(originator *Conn, task func(ws *Conn, arg any), arg any, onFinish func(originator *Conn, arg any)) {
	j := &eachJob{originator: originator, task: task, arg: arg, onFinish: onFinish, srv: s}
	j.pending.Store(1)
	if originator != nil {
		originator.eachOut.Add(1)
	}
	s.reg.each(func(c *Conn) {
		if c == originator {
			return
		}
		j.pending.Add(1)
		c.addTask(taskEntry{job: j})
	})
	j.done()
}

// addTask queues Each work to c and makes sure its turn comes.
func (c *Conn) addTask(t taskEntry) {
	c.wmu.Lock()
	if c.tasksDone {
		c.wmu.Unlock()
		t.settle(c)
		return
	}
	if !t.finish && c.tasks != nil && len(*c.tasks) >= maxTasks {
		c.wmu.Unlock()
		c.srv.stats.taskOverflows.Add(1)
		c.CloseWithCode(ClosePolicyViolation, "too much pending work")
		t.job.done()
		return
	}
	if c.tasks == nil {
		c.tasks = taskLists.Get().(*[]taskEntry)
	}
	*c.tasks = append(*c.tasks, t)
	c.t.tasksQueued(c, len(*c.tasks) == 1)
	c.wmu.Unlock()
}

// runTasksLocked runs up to limit queued tasks; it reports whether more
// remain. The caller holds cbMu.
func (c *Conn) runTasksLocked(limit int) (more bool) {
	for ran := 0; ran < limit; {
		c.wmu.Lock()
		batch := c.tasks
		c.tasks = nil
		c.wmu.Unlock()
		if batch == nil {
			return false
		}
		for i, t := range *batch {
			t.run(c)
			(*batch)[i] = taskEntry{}
		}
		ran += len(*batch)
		if cap(*batch) <= maxPooledTasks {
			*batch = (*batch)[:0]
			taskLists.Put(batch)
		}
	}
	c.wmu.Lock()
	more = c.tasks != nil
	c.wmu.Unlock()
	return more
}

// runTasksStream runs the tasks of a connection that is not on the poller
// (TLS), whose own goroutine is blocked reading.
func (c *Conn) runTasksStream() {
	for {
		c.cbMu.Lock()
		for c.runTasksLocked(maxTasks) {
		}
		c.unlock()
		c.wmu.Lock()
		if c.tasks == nil {
			c.taskRunner = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
	}
}

// run performs one entry in c's turn; the caller holds c.cbMu.
func (t taskEntry) run(c *Conn) {
	j := t.job
	if t.finish {
		j.finish()
		return
	}
	if c.state.Load() < stateClosed {
		j.runTask(c)
	}
	j.done()
}

// settle accounts for an entry that c, closed, will never run.
func (t taskEntry) settle(c *Conn) {
	if t.finish {
		t.job.finish()
		return
	}
	t.job.done()
}

func (j *eachJob) runTask(c *Conn) {
	defer j.srv.recoverPanic(c)
	j.task(c, j.arg)
}

// done counts one target's task as run; the last one finishes the job.
func (j *eachJob) done() {
	if j.pending.Add(-1) != 0 {
		return
	}
	o := j.originator
	if o != nil {
		o.eachFinished()
	}
	if j.onFinish == nil {
		return
	}
	if o == nil {
		j.finish()
		return
	}
	o.addTask(taskEntry{job: j, finish: true})
}

func (j *eachJob) finish() {
	defer j.srv.recoverPanic(j.originator)
	j.onFinish(j.originator, j.arg)
}

// eachPausedLocked reports whether c has too many Each calls unfinished to
// be read now; it then stays paused until eachFinished resumes it. The
// caller holds wmu, as eachFinished does when it crosses the window, so a
// resume cannot slip between the check and the pause.
func (c *Conn) eachPausedLocked() bool {
	if c.eachOut.Load() < eachWindow || c.tasksDone {
		return false
	}
	c.paused.Store(true)
	return true
}

// eachFinished counts one of c's Each calls as finished and resumes its
// reading when that brings it under the window.
func (c *Conn) eachFinished() {
	if c.eachOut.Add(-1) != eachWindow-1 {
		return
	}
	c.wmu.Lock()
	resumed := c.paused.Load()
	c.resumeLocked()
	c.wmu.Unlock()
	if resumed {
		c.t.resume(c)
	}
}

// resumeLocked ends a pause; the caller holds wmu.
func (c *Conn) resumeLocked() {
	c.paused.Store(false)
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

// waitEachWindow blocks a stream connection's reader while the connection
// is paused for its Each calls.
func (c *Conn) waitEachWindow() {
	for {
		c.wmu.Lock()
		if !c.eachPausedLocked() {
			c.wmu.Unlock()
			return
		}
		if c.wake == nil {
			c.wake = make(chan struct{})
		}
		w := c.wake
		c.wmu.Unlock()
		<-w
	}
}
