//go:build linux

package wsext

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// maskedFrame builds a masked client frame.
func maskedFrame(op byte, payload []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := appendHeader(nil, op, true, false, len(payload))
	f[1] |= 0x80
	f = append(f, key[:]...)
	start := len(f)
	f = append(f, payload...)
	maskBytes(key, 0, f[start:])
	return f
}

// BenchmarkFrameParse measures the frame reader alone: a read buffer
// holding one text message, handed to a sink that does nothing.
func BenchmarkFrameParse(b *testing.B) {
	for _, size := range []int{64, 4096, 65536} {
		b.Run(byteSize(size), func(b *testing.B) {
			var rs frameReader
			sink := &recordSink{max: 1 << 20, discard: true}
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = 'a' + byte(i%26)
			}
			frame := maskedFrame(opText, payload)
			buf := make([]byte, len(frame))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, frame) // the reader unmasks in place
				if err := rs.feed(buf, sink); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// pollPair attaches one end of a socket pair to s as a polled connection
// and returns the other end as the peer.
func pollPair(tb testing.TB, s *Server, settings Settings) (*Conn, net.Conn) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := getPoller(); err != nil {
		tb.Skip("no poller:", err)
	}
	unix.SetNonblock(fds[0], true)
	peerFile := os.NewFile(uintptr(fds[1]), "peer")
	peer, err := net.FileConn(peerFile)
	peerFile.Close()
	if err != nil {
		tb.Fatal(err)
	}
	s.start()
	c := &Conn{srv: s, settings: settings, uuid: s.nextUUID.Add(1), fd: -1, regIdx: -1}
	s.openPolled(c, fds[0], nil)
	tb.Cleanup(func() { peer.Close() })
	return c, peer
}

// BenchmarkEchoPath is the steady-state echo of the spec's example over a
// real socket through the poller: the peer writes a frame, the server's
// OnMessage writes it back, the peer reads it.
func BenchmarkEchoPath(b *testing.B) {
	for _, size := range []int{64, 65536} {
		b.Run(byteSize(size), func(b *testing.B) {
			s := NewServer(Options{})
			s.SetMaxMsgSize(1 << 20)
			_, peer := pollPair(b, s, Settings{OnMessage: func(ws *Conn, data []byte, isText bool) { ws.Write(data, isText) }})
			frame := maskedFrame(opBinary, make([]byte, size))
			reply := make([]byte, len(appendHeader(nil, opBinary, true, false, size))+size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := peer.Write(frame); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(peer, reply); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBroadcast writes one prepared message to 1 000 polled
// connections per iteration, as /broadcast and Publish do; the peers drain
// their sockets concurrently. Allocations are per broadcast, so
// allocs/op over 1 000 is the cost per recipient.
func BenchmarkBroadcast(b *testing.B) {
	const receivers = 1000
	s := NewServer(Options{MaxBackpressure: 64 << 20})
	conns := make([]*Conn, receivers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range conns {
		var peer net.Conn
		conns[i], peer = pollPair(b, s, Settings{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				if _, err := peer.Read(buf); err != nil {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		pm := NewPreparedMessage(msg, false)
		for _, c := range conns {
			c.WritePrepared(pm)
		}
		pm.Release()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*receivers), "ns/delivery")
	close(stop)
	for _, c := range conns {
		c.abort()
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}
