package pubsub_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsd-server/wsd/pubsub/internal/redistest"
)

// BenchmarkFanOut measures deliveries per second from one publisher to
// 10 000 subscribers of one channel on a real daemon, with each engine,
// without and with history (--history-size 1000, the -history rows):
//
//	in-process  --processes 1 (one process cannot span two workers)
//	cluster     --processes 2, through the master's relay
//	redis       --processes 2 --redis, through a local redis-server
//
// Each iteration publishes one 64-byte message from a /pubsub client on
// the first worker; the clock stops when every subscriber has received
// every message. Run it with a fixed count, as for the figure in
// BENCHMARKS.md:
//
//	go test -run '^$' -bench FanOut -benchtime 1000x -timeout 30m ./pubsub/
func BenchmarkFanOut(b *testing.B) {
	const subscribers = 10000
	engines := []struct {
		name      string
		processes int
		redis     bool
		history   bool
	}{
		{"in-process", 1, false, false},
		{"in-process-history", 1, false, true},
		{"cluster", 2, false, false},
		{"cluster-history", 2, false, true},
		{"redis", 2, true, false},
		{"redis-history", 2, true, true},
	}
	for _, e := range engines {
		// The function given to b.Run runs twice (b.N = 1, then the count
		// asked for): the daemon and its subscribers are set up once, and
		// stopped with the parent benchmark.
		var env *fanOutEnv
		b.Run(e.name, func(sb *testing.B) {
			if env == nil {
				tb := scoped{sb, b}
				var r *redistest.Server
				var args []string
				if e.redis {
					r = redistest.Start(tb)
					args = append(args, "--redis", r.URL())
				}
				if e.history {
					args = append(args, "--history-size", "1000")
				}
				env = setUpFanOut(tb, startDaemon(tb, e.processes, args...), subscribers)
				env.redis = r
			}
			env.run(sb)
		})
		// 10 000 connections each side: free them before the next engine.
		if env != nil {
			env.stop()
		}
	}
}

// scoped is a sub-benchmark whose cleanups and temporary directories
// belong to its parent, so that what it sets up outlives it.
type scoped struct {
	testing.TB
	parent testing.TB
}

func (s scoped) Cleanup(f func())                { s.parent.Cleanup(f) }
func (s scoped) TempDir() string                 { return s.parent.TempDir() }
func (s scoped) Failed() bool                    { return s.parent.Failed() || s.TB.Failed() }
func (s scoped) Logf(format string, args ...any) { s.parent.Logf(format, args...) }

// fanOutEnv is a daemon with subscribers on channel "fan" and a publisher.
type fanOutEnv struct {
	d         *daemon
	redis     *redistest.Server // nil without Redis
	subs      []*rawSub
	pub       *rawSub
	delivered atomic.Int64 // 'M' messages received by all subscribers
	perWorker map[string]int
}

func setUpFanOut(tb testing.TB, d *daemon, n int) *fanOutEnv {
	env := &fanOutEnv{d: d, subs: make([]*rawSub, n), perWorker: make(map[string]int)}
	tb.Cleanup(env.stop)
	var wg sync.WaitGroup
	var dialErr atomic.Pointer[error]
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < n; i += 16 {
				s, err := dialRaw(d.addr, "/pubsub/fan")
				if err != nil {
					dialErr.Store(&err)
					return
				}
				env.subs[i] = s
				go s.count(&env.delivered)
			}
		})
	}
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		tb.Fatalf("dialing the subscribers: %v", *err)
	}
	for _, s := range env.subs {
		env.perWorker[s.worker]++
	}
	pub, err := dialRaw(d.addr, "/pubsub/fan")
	if err != nil {
		tb.Fatal(err)
	}
	env.pub = pub
	go pub.count(new(atomic.Int64))

	// Every subscription is in once a probe reaches every subscriber.
	deadline := time.Now().Add(60 * time.Second)
	for probes := 0; ; probes++ {
		if err := pub.send([]byte("probe")); err != nil {
			tb.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		all := true
		for _, s := range env.subs {
			if s.probes.Load() == 0 {
				all = false
				break
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %d probes, not every subscriber is reached", probes)
		}
	}
	return env
}

// stop closes the connections and stops the daemon and Redis; it may be
// called again.
func (env *fanOutEnv) stop() {
	for _, s := range env.subs {
		if s != nil {
			s.conn.Close()
		}
	}
	if env.pub != nil {
		env.pub.conn.Close()
	}
	env.d.stop()
	if env.redis != nil {
		env.redis.Kill()
	}
}

func (env *fanOutEnv) run(b *testing.B) {
	n := int64(len(env.subs))
	msg := bytes.Repeat([]byte("M"), 64)
	base := env.delivered.Load()
	want := base + int64(b.N)*n
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	// Not b.Loop: it stops the timer when the loop ends, and the
	// deliveries are still under way then.
	for range b.N {
		if err := env.pub.send(msg); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for env.delivered.Load() < want {
		if time.Now().After(deadline) {
			ended := 0
			for _, s := range env.subs {
				if s.ended.Load() {
					ended++
				}
			}
			b.Fatalf("%d of %d deliveries; %d subscribers were disconnected", env.delivered.Load()-base, want-base, ended)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(want-base)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/op")
	b.Logf("%d subscribers over workers %v, %d messages", n, env.perWorker, b.N)
}

// rawSub is a bare WebSocket client, light enough for 10 000 in one test
// process: a socket, a small buffer and a goroutine that counts frames.
type rawSub struct {
	conn   net.Conn
	br     *bufio.Reader
	worker string
	probes atomic.Int64
	ended  atomic.Bool
	mu     sync.Mutex // serialises write
}

func dialRaw(addr, path string) (*rawSub, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	br := bufio.NewReaderSize(conn, 1024)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	return &rawSub{conn: conn, br: br, worker: resp.Header.Get("Wsd-Worker")}, nil
}

// count reads frames until the connection ends, adding each data message
// that starts with 'M' to delivered and counting probes.
func (s *rawSub) count(delivered *atomic.Int64) {
	defer s.ended.Store(true)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(s.br, hdr[:2]); err != nil {
			return
		}
		n := int64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(s.br, hdr[:2]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(s.br, hdr[:8]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint64(hdr[:8]))
		}
		switch op := hdr[0] & 0x0f; {
		case op == 0x8: // close
			return
		case op == 0x9: // ping: the daemon closes a peer that does not answer
			payload := make([]byte, n)
			if _, err := io.ReadFull(s.br, payload); err != nil {
				return
			}
			s.write(0x8a, payload)
			continue
		case op >= 0x8 || n == 0:
			if _, err := s.br.Discard(int(n)); err != nil {
				return
			}
			continue
		}
		first, err := s.br.Peek(1)
		if err != nil {
			return
		}
		switch first[0] {
		case 'M':
			delivered.Add(1)
		case 'p':
			s.probes.Add(1)
		}
		if _, err := s.br.Discard(int(n)); err != nil {
			return
		}
	}
}

// send writes one masked text message.
func (s *rawSub) send(data []byte) error { return s.write(0x81, data) }

// write writes one masked frame, with a zero mask (which RFC 6455 allows);
// b0 is the first byte: FIN and the opcode.
func (s *rawSub) write(b0 byte, data []byte) error {
	var frame []byte
	if len(data) < 126 {
		frame = []byte{b0, 0x80 | byte(len(data)), 0, 0, 0, 0}
	} else {
		frame = []byte{b0, 0x80 | 126, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(frame[2:], uint16(len(data)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.conn.Write(append(frame, data...))
	return err
}
