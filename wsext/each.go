package wsext

import "sync"

type eachJob struct {
	originator *Conn
	task       func(ws *Conn, arg any)
	arg        any
	onFinish   func(originator *Conn, arg any)
}

// eachQueue runs Each jobs in call order on one goroutine, started when
// there is work and gone when there is none. The queue is unbounded so that
// Each never blocks its caller.
type eachQueue struct {
	mu      sync.Mutex
	jobs    []eachJob
	running bool
	run     func(eachJob)
}

func (q *eachQueue) push(j eachJob) {
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.drain()
	}
}

func (q *eachQueue) drain() {
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.running = false
			q.jobs = nil
			q.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs[0] = eachJob{}
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		q.run(j)
	}
}
