//go:build chaos

package chaos

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestSlowReaders: 20 subscribers of /pubsub/slow and 20 members of
// /broadcast that never read (with a 4 KiB receive buffer, so that TCP
// holds little for them), while a publisher and a broadcaster each send
// 1500 messages of 4 KiB a second for 8 s: about 49 MB for each slow
// reader, far past --max-backpressure (1 MiB) and every socket buffer. The
// daemon must close each of them (with 1008 when the close frame gets
// through) instead of queueing for it, and its memory may grow by 100 MB at
// most.
func TestSlowReaders(t *testing.T) {
	s := begin(t, daemonOpts{}, probeOpts{})
	const n, size, rate, dur = 20, 4096, 1500, 8 * time.Second
	paths := []string{"/pubsub/slow", "/broadcast"}
	slow := map[string][]*rawConn{}
	for _, path := range paths {
		conns, err := slowReaders(s.d.addr, path, n)
		if err != nil {
			t.Fatalf("slow readers of %s: %v", path, err)
		}
		slow[path] = conns
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
	}
	var wg sync.WaitGroup
	sent := make([]int64, len(paths))
	for i, path := range paths {
		wg.Go(func() {
			var err error
			sent[i], err = broadcaster(s.d.addr, path, size, dur, rate)
			if err != nil {
				t.Errorf("sender on %s, after %d messages: %v", path, sent[i], err)
			}
		})
	}
	wg.Wait()
	s.endAttack(100 * MB)
	closes, _ := s.d.metric("wsd_websocket_backpressure_closes_total")
	s.r.notef("wsd_websocket_backpressure_closes_total %v", closes)
	for i, path := range paths {
		out := drainAll(slow[path])
		ended, codes, held := 0, map[int]int{}, int64(0)
		for _, o := range out {
			if o.ended {
				ended++
			}
			codes[o.code]++
			held += o.bytes
		}
		s.r.notef("%s: %d messages sent (%.1f MB per reader); %d of %d slow readers ended by the server, close codes %s; %.1f MB still reached them after the attack",
			path, sent[i], float64(sent[i]*size)/MB, ended, n, codeCounts(codes), float64(held)/MB)
		for j, o := range out {
			if !o.ended {
				t.Errorf("%s: slow reader %d is still open after %.1f MB were sent to it", path, j, float64(sent[i]*size)/MB)
			}
			if o.code != 0 && o.code != 1008 {
				t.Errorf("%s: slow reader %d was closed with %d, not 1008", path, j, o.code)
			}
		}
	}
	s.finish(true)
}

// codeCounts formats close codes and their counts; 0 means no close frame.
func codeCounts(m map[int]int) string {
	s := ""
	for _, code := range []int{1008, 0} {
		if m[code] > 0 {
			s += fmt.Sprintf("%s×%d ", codeName(code), m[code])
		}
	}
	for code, k := range m {
		if code != 1008 && code != 0 {
			s += fmt.Sprintf("%s×%d ", codeName(code), k)
		}
	}
	return s
}

func codeName(code int) string {
	if code == 0 {
		return "none"
	}
	return fmt.Sprint(code)
}
