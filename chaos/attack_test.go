//go:build chaos

package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The hostile clients. Each runs for a bounded time and a bounded number of
// iterations, and never reads unless its attack says so.

// errKinds counts errors by a short description.
type errKinds struct {
	mu sync.Mutex
	m  map[string]int
}

func (e *errKinds) add(err error) {
	s := errKind(err)
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int{}
	}
	e.m[s]++
	e.mu.Unlock()
}

func (e *errKinds) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	keys := make([]string, 0, len(e.m))
	for k := range e.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", k, e.m[k])
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// errKind reduces an error to what kind of failure it is.
func errKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, net.ErrClosed):
		return "closed by the client"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "handshake: "):
		s := err.Error()
		return s[strings.Index(s, "handshake: "):]
	}
	return err.Error()
}

// holdStats says how an attack that opens connections and holds them went.
type holdStats struct {
	held     []net.Conn // connected: upgraded, or waiting in the server's backlog
	upgraded int        // of held, those the server upgraded
	failed   int        // could not even connect
	errs     errKinds   // why upgrades and connects failed
}

// holdConns opens n connections to addr, 64 at a time. Every other one
// upgrades to a WebSocket on / (waiting at most 2 s for the 101); the
// others connect and send nothing. Connections are kept open, upgraded or
// not, until the caller closes them.
func holdConns(addr string, n int) *holdStats {
	st := &holdStats{}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				var c net.Conn
				var err error
				upgraded := false
				if i%2 == 0 {
					var rc *rawConn
					rc, err = dialRaw(addr, "/", rawOpts{timeout: 2 * time.Second})
					if err == nil {
						c, upgraded = rc, true
					} else {
						st.errs.add(err)
						// The connection itself may be fine, and wait in the
						// backlog: hold a new one in its place.
						c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
					}
				} else {
					c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
				}
				mu.Lock()
				if err != nil {
					st.errs.add(err)
					st.failed++
				} else {
					st.held = append(st.held, c)
					if upgraded {
						st.upgraded++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return st
}

// release closes every held connection.
func (st *holdStats) release() {
	for _, c := range st.held {
		c.Close()
	}
	st.held = nil
}

// floodStats says how a flood went.
type floodStats struct {
	bytes    atomic.Int64 // written
	conns    atomic.Int64 // WebSockets opened
	cut      atomic.Int64 // connections the server ended under the flood
	dialErrs errKinds     // failed connects and upgrades
	cutErrs  errKinds     // how the server ended them
}

func (f *floodStats) String() string {
	return fmt.Sprintf("%.1f MB sent over %d connections; %d ended by the server (%s); failed upgrades: %s",
		float64(f.bytes.Load())/MB, f.conns.Load(), f.cut.Load(), f.cutErrs.String(), f.dialErrs.String())
}

// flood runs clients clients for d. Each upgrades path on addr and writes
// block over and over, never reading; when the server ends its connection
// it opens another, up to 200 times.
func flood(addr, path string, clients int, d time.Duration, block []byte) *floodStats {
	st := &floodStats{}
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range 200 {
				if time.Now().After(end) {
					return
				}
				c, err := dialRaw(addr, path, rawOpts{})
				if err != nil {
					st.dialErrs.add(err)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				st.conns.Add(1)
				c.SetWriteDeadline(end)
				for range 1 << 20 {
					k, err := c.Write(block)
					st.bytes.Add(int64(k))
					if err != nil {
						var ne net.Error
						if !(errors.As(err, &ne) && ne.Timeout()) {
							st.cut.Add(1)
							st.cutErrs.add(err)
						}
						break
					}
				}
				linger0(c)
				c.Close()
			}
		})
	}
	wg.Wait()
	return st
}

// controlBlock returns about 64 KiB of client frames of opcode op, each
// with a 125-byte payload (the most a control frame may carry).
func controlBlock(op byte) []byte {
	payload := []byte(strings.Repeat("p", 125))
	var b []byte
	for len(b) < 64<<10 {
		b = appendFrame(b, op, payload)
	}
	return b
}

// closeFloodStats says how a close flood went.
type closeFloodStats struct {
	polite, rude, abrupt atomic.Int64 // iterations of each kind
	dialErrs             errKinds
	politeErrs           errKinds // polite closes the server did not answer as it should
	firstErrs            []string
	mu                   sync.Mutex
}

func (c *closeFloodStats) fail(format string, args ...any) {
	c.mu.Lock()
	if len(c.firstErrs) < 5 {
		c.firstErrs = append(c.firstErrs, fmt.Sprintf(format, args...))
	}
	c.mu.Unlock()
}

// closeFlood runs workers goroutines for d that each, over and over (at
// most 2000 times), open a WebSocket and close it in one of three ways:
//
//   - polite: close 1000, then wait for the server's close frame (which
//     must echo the code) and its end of the connection;
//   - rude: close 1000 and a text frame and a ping after it, then go
//     without reading;
//   - abrupt: close 1000 and a TCP reset at once.
func closeFlood(addr string, workers int, d time.Duration) *closeFloodStats {
	st := &closeFloodStats{}
	end := time.Now().Add(d)
	closeFrame := appendFrame(nil, opClose, closePayload(1000, "bye"))
	rude := appendFrame(appendFrame(slices.Clone(closeFrame), opText, []byte("after the close")), opPing, []byte("?"))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range 2000 {
				if time.Now().After(end) {
					return
				}
				c, err := dialRaw(addr, "/", rawOpts{})
				if err != nil {
					st.dialErrs.add(err)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				switch (w + i) % 3 {
				case 0:
					st.polite.Add(1)
					c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Write(closeFrame); err != nil {
						st.politeErrs.add(err)
						st.fail("polite close: write: %v", err)
						break
					}
					_, op, payload, err := c.readFrame(125)
					switch {
					case err != nil:
						st.politeErrs.add(err)
						st.fail("polite close: no close frame back: %v", err)
					case op != opClose || closeCode(payload) != 1000:
						st.politeErrs.add(errors.New("wrong answer"))
						st.fail("polite close: answered with opcode %d, code %d", op, closeCode(payload))
					default:
						if _, err := c.br.ReadByte(); err != io.EOF {
							st.politeErrs.add(fmt.Errorf("connection not ended: %w", err))
							st.fail("polite close: the server did not end the connection after the close handshake: %v", err)
						}
					}
				case 1:
					st.rude.Add(1)
					c.SetWriteDeadline(time.Now().Add(time.Second))
					c.Write(rude)
				case 2:
					st.abrupt.Add(1)
					c.SetWriteDeadline(time.Now().Add(time.Second))
					c.Write(closeFrame)
					linger0(c)
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	return st
}

// readers are WebSocket clients that read numbered binary messages as fast
// as they can and check that, from the first they get, none is missing,
// repeated or out of order.
type readers struct {
	conns    []*rawConn
	wg       sync.WaitGroup
	stopping atomic.Bool
	msgs     atomic.Int64 // messages read, all readers together
	closed   atomic.Int64 // readers the server ended
	codes    errKinds     // how the server ended them: close codes or errors
	mu       sync.Mutex
	problems []string
}

// startReaders opens n readers of path on addr. Each message must be size
// bytes, its first 8 bytes a big-endian sequence number.
func startReaders(addr, path string, n, size int) (*readers, error) {
	r := &readers{}
	for range n {
		c, err := dialRaw(addr, path, rawOpts{})
		if err != nil {
			r.stop()
			return nil, err
		}
		r.conns = append(r.conns, c)
	}
	for _, c := range r.conns {
		r.wg.Go(func() { r.read(c, size) })
	}
	return r, nil
}

func (r *readers) problem(format string, args ...any) {
	r.mu.Lock()
	if len(r.problems) < 10 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
	r.mu.Unlock()
}

func (r *readers) read(c *rawConn, size int) {
	var last uint64
	var seq [8]byte
	ended := func(err error) {
		if !r.stopping.Load() {
			r.closed.Add(1)
			r.codes.add(err)
		}
	}
	for range 100_000_000 {
		fin, op, n, err := c.readHeader()
		if err != nil {
			ended(err)
			return
		}
		if op == opClose {
			b := make([]byte, min(n, 125))
			io.ReadFull(c.br, b)
			ended(fmt.Errorf("close %d", closeCode(b)))
			return
		}
		if !fin || op != opBinary || n != int64(size) {
			r.problem("a frame fin=%v opcode %d of %d bytes, want a whole binary message of %d", fin, op, n, size)
			return
		}
		if _, err := io.ReadFull(c.br, seq[:]); err != nil {
			ended(err)
			return
		}
		if _, err := io.CopyN(io.Discard, c.br, n-8); err != nil {
			ended(err)
			return
		}
		s := binary.BigEndian.Uint64(seq[:])
		if last != 0 && s != last+1 {
			r.problem("message %d after message %d", s, last)
			return
		}
		last = s
		r.msgs.Add(1)
	}
}

// stop closes the readers and waits for them.
func (r *readers) stop() {
	r.stopping.Store(true)
	for _, c := range r.conns {
		c.Close()
	}
	r.wg.Wait()
}

// broadcaster upgrades path on addr and sends binary messages of size
// bytes, numbered from 1 in their first 8 bytes, as fast as the server
// takes them, for d. perSecond > 0 paces it to that many messages a second
// instead. It returns how many it sent.
func broadcaster(addr, path string, size int, d time.Duration, perSecond int) (int64, error) {
	c, err := dialRaw(addr, path, rawOpts{})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	end := time.Now().Add(d)
	c.SetWriteDeadline(end)
	// 16 frames a write; only the sequence numbers change.
	const batch = 16
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	frame := appendFrame(nil, opBinary, payload)
	hdr := len(frame) - size
	buf := make([]byte, 0, batch*len(frame))
	for range batch {
		buf = append(buf, frame...)
	}
	var sent int64
	start := time.Now()
	for time.Now().Before(end) && sent < 100_000_000 {
		if perSecond > 0 {
			due := start.Add(time.Duration(sent+batch) * time.Second / time.Duration(perSecond))
			if wait := time.Until(due); wait > 0 {
				time.Sleep(min(wait, time.Until(end)))
				continue
			}
		}
		for i := range batch {
			binary.BigEndian.PutUint64(buf[i*len(frame)+hdr:], uint64(sent+int64(i)+1))
		}
		k, err := c.Write(buf)
		sent += int64(k / len(frame))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return sent, nil
			}
			return sent, err
		}
	}
	return sent, nil
}

// slowReaders opens n WebSockets of path on addr with a 4 KiB receive
// buffer that never read.
func slowReaders(addr, path string, n int) ([]*rawConn, error) {
	var conns []*rawConn
	for range n {
		c, err := dialRaw(addr, path, rawOpts{rcvbuf: 4096})
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// slowOutcome is what became of a slow reader.
type slowOutcome struct {
	ended bool  // the server ended the connection
	code  int   // the close code it sent first, 0 if none reached the reader
	bytes int64 // what was waiting for the reader
}

// drainAll reads what waits for each connection, all at once, and reports
// how each one ended: a reader the server still holds stays quiet for 2 s.
func drainAll(conns []*rawConn) []slowOutcome {
	out := make([]slowOutcome, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			code, n, ended := c.drain(2*time.Second, 15*time.Second)
			out[i] = slowOutcome{ended: ended, code: code, bytes: n}
			c.Close()
		})
	}
	wg.Wait()
	return out
}
