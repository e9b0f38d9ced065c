package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// ErrQueueFull is returned when more than Options.MaxQueue bytes wait to be
// written to the other side of a relay connection: it is not reading.
var ErrQueueFull = errors.New("cluster: relay queue full")

// sender writes frames to one connection in the order they were queued,
// from a goroutine of its own, so that a frame is queued with a copy and no
// system call, and frames queued meanwhile go out in one write.
type sender struct {
	conn net.Conn
	max  int

	mu     sync.Mutex
	wake   *sync.Cond
	buf    []byte // queued bytes
	spare  []byte // the previous write's buffer, for reuse
	closed bool
	err    error // why the connection failed
}

func newSender(conn net.Conn, max int) *sender {
	s := &sender{conn: conn, max: max}
	s.wake = sync.NewCond(&s.mu)
	return s
}

// queue appends a frame of size bytes, written by enc, to the queue. An
// empty queue takes a frame of any size.
func (s *sender) queue(size int, enc func([]byte) []byte) error {
	return s.add(size, admitFrame, enc)
}

// queueAnswer appends the frames of an answer to a request, size bytes in
// all, written by enc. They go in whole while no more than max bytes
// wait, whatever their own size: a history answer may be larger than max
// (it is bounded by the history's own byte limit), and is never split.
func (s *sender) queueAnswer(size int, enc func([]byte) []byte) error {
	return s.add(size, admitAnswer, enc)
}

// queueAll appends frames with no limit, for bytes bounded otherwise: the
// subscriptions and presence entries an Engine replays on a new
// connection, which the Hub has not begun to read.
func (s *sender) queueAll(enc func([]byte) []byte) error {
	return s.add(0, admitAll, enc)
}

// admit is how a queue limits what it takes.
type admit int

const (
	admitFrame  admit = iota // within max, the new frame included, or into an empty queue
	admitAnswer              // if at most max bytes wait before it
	admitAll                 // always
)

func (s *sender) add(size int, how admit, enc func([]byte) []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if s.err != nil {
			return fmt.Errorf("cluster: relay connection: %w", s.err)
		}
		return net.ErrClosed
	}
	switch how {
	case admitFrame:
		if len(s.buf) > 0 && len(s.buf)+size > s.max {
			return ErrQueueFull
		}
	case admitAnswer:
		if len(s.buf) > s.max {
			return ErrQueueFull
		}
	}
	if len(s.buf) == 0 {
		s.wake.Signal()
	}
	s.buf = enc(s.buf)
	return nil
}

// run writes the queue until close or a write error.
func (s *sender) run() {
	for {
		s.mu.Lock()
		for len(s.buf) == 0 && !s.closed {
			s.wake.Wait()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		b := s.buf
		s.buf, s.spare = s.spare[:0], nil
		s.mu.Unlock()

		_, err := s.conn.Write(b)

		s.mu.Lock()
		// A burst's big buffer is let go rather than kept for good.
		if cap(b) <= 1<<20 {
			s.spare = b[:0]
		}
		if err != nil && !s.closed {
			s.closed, s.err = true, err
			s.buf = nil
			// The reader of this connection sees the failure too and
			// handles it; closing here makes sure it does.
			s.conn.Close()
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// close stops run and drops what is queued.
func (s *sender) close() {
	s.mu.Lock()
	s.closed = true
	s.buf = nil
	s.wake.Signal()
	s.mu.Unlock()
}
