package wsext

import (
	"net"
	"sync"
	"sync/atomic"
)

// sharedFrame is one encoded frame written to many connections: a
// broadcast costs one buffer, referenced by every queue that holds it,
// instead of a copy per recipient.
type sharedFrame struct {
	b    []byte
	refs atomic.Int32
}

func newSharedFrame(b []byte) *sharedFrame {
	f := &sharedFrame{b: b}
	f.refs.Store(1)
	return f
}

func (f *sharedFrame) retain() { f.refs.Add(1) }

// release drops one reference; the last one returns the buffer.
func (f *sharedFrame) release() {
	if f.refs.Add(-1) == 0 {
		putBuf(f.b)
		f.b = nil
	}
}

// segment is a piece of an outQueue: a buffer of our own holding whole
// frames (or, when tail is set, the rest of one frame that a direct write
// began), or one shared frame.
type segment struct {
	b    []byte
	sf   *sharedFrame
	tail bool
}

func (s segment) release() {
	if s.sf != nil {
		s.sf.release()
	} else {
		putBuf(s.b)
	}
}

// outQueue holds the frames a connection has not sent yet, in order. It
// knows where its frames begin, so that a connection closed for
// backpressure can drop what the peer has none of while finishing the
// frame the peer has the start of: the close that follows lands at a frame
// boundary. It is used under the connection's wmu.
type outQueue struct {
	segs *[]segment // nil when empty, so an idle connection holds no queue
	head int        // bytes of the first segment already sent
	size int        // bytes queued, those sent excluded
}

// segLists recycles segment lists so that queueing allocates nothing in the
// steady state.
var segLists = sync.Pool{New: func() any { l := make([]segment, 0, 8); return &l }}

// maxIovecs bounds the buffers of one writev (Linux allows 1024).
const maxIovecs = 64

// coalesceMax is the largest frame copied into a shared buffer of our own
// rather than given its own; larger frames get a buffer each.
const coalesceMax = 16 << 10

func (q *outQueue) len() int { return q.size }

func (q *outQueue) list() *[]segment {
	if q.segs == nil {
		q.segs = segLists.Get().(*[]segment)
	}
	return q.segs
}

// push copies a frame (its header and payload) to the end of the queue.
func (q *outQueue) push(hdr, payload []byte) {
	n := len(hdr) + len(payload)
	if n == 0 {
		return
	}
	l := q.list()
	if k := len(*l); k > 0 {
		last := &(*l)[k-1]
		if last.sf == nil && !last.tail && len(last.b)+n <= cap(last.b) {
			last.b = append(append(last.b, hdr...), payload...)
			q.size += n
			return
		}
	}
	b := getBuf(max(n, min(coalesceMax, 4096)))
	b = append(append(b, hdr...), payload...)
	*l = append(*l, segment{b: b})
	q.size += n
}

// pushTail queues the rest of a frame whose start a direct write sent.
func (q *outQueue) pushTail(a, b []byte) {
	buf := append(append(getBuf(len(a)+len(b)), a...), b...)
	l := q.list()
	*l = append(*l, segment{b: buf, tail: true})
	q.size += len(buf)
}

// pushShared queues a shared frame, taking a reference to it.
func (q *outQueue) pushShared(f *sharedFrame) {
	f.retain()
	l := q.list()
	*l = append(*l, segment{b: f.b, sf: f})
	q.size += len(f.b)
}

// iovecs appends the unsent bytes, segment by segment, to dst.
func (q *outQueue) iovecs(dst [][]byte) [][]byte {
	if q.segs == nil {
		return dst
	}
	for i, s := range *q.segs {
		if len(dst) == cap(dst) {
			break
		}
		if i == 0 {
			dst = append(dst, s.b[q.head:])
		} else {
			dst = append(dst, s.b)
		}
	}
	return dst
}

// advance drops n sent bytes from the front.
func (q *outQueue) advance(n int) {
	q.size -= n
	l := *q.segs
	i := 0
	for n > 0 {
		rest := len(l[i].b) - q.head
		if n < rest {
			q.head += n
			break
		}
		n -= rest
		l[i].release()
		l[i] = segment{}
		q.head = 0
		i++
	}
	if i > 0 {
		k := copy(l, l[i:])
		clear(l[k:])
		*q.segs = l[:k]
	}
	if q.size == 0 {
		q.free()
	}
}

// free returns the (empty) segment list.
func (q *outQueue) free() {
	if q.segs != nil && len(*q.segs) == 0 {
		if cap(*q.segs) <= 1024 {
			segLists.Put(q.segs)
		}
		q.segs, q.head = nil, 0
	}
}

// keepFrame drops every frame the peer has no byte of, keeping the rest of
// the one it has the start of, if any.
func (q *outQueue) keepFrame() {
	if q.segs == nil {
		return
	}
	l := *q.segs
	keep := 0
	switch first := &l[0]; {
	case first.tail:
		keep = 1 // the rest of a frame a direct write began
	case q.head > 0 && first.sf != nil:
		keep = 1 // a shared frame is one frame
	case q.head > 0:
		// A buffer of whole frames: cut after the frame under way (or
		// before the next one, when the head is at a boundary).
		i := 0
		for i < q.head {
			i += frameSize(first.b[i:])
		}
		if i > q.head {
			first.b = first.b[:i]
			keep = 1
		}
	}
	for j := keep; j < len(l); j++ {
		l[j].release()
		l[j] = segment{}
	}
	*q.segs = l[:keep]
	q.size = 0
	if keep == 1 {
		q.size = len(l[0].b) - q.head
	} else {
		q.head = 0
	}
	q.free()
}

// reset drops everything.
func (q *outQueue) reset() {
	if q.segs == nil {
		return
	}
	for i := range *q.segs {
		(*q.segs)[i].release()
		(*q.segs)[i] = segment{}
	}
	*q.segs = (*q.segs)[:0]
	q.size, q.head = 0, 0
	q.free()
}

// take moves the whole queue out, for a writer that sends it without the
// lock; done releases it once sent.
func (q *outQueue) take() (taken outQueue) {
	taken, *q = *q, outQueue{}
	return taken
}

// writeTo sends the queue to a stream connection (TLS, or any net.Conn):
// one writev where the connection supports it.
func (q *outQueue) writeTo(c net.Conn) error {
	for q.size > 0 {
		var arr [maxIovecs][]byte
		bufs := net.Buffers(q.iovecs(arr[:0]))
		n, err := bufs.WriteTo(c)
		q.advance(int(n))
		if err != nil {
			return err
		}
	}
	return nil
}
