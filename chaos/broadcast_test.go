//go:build chaos

package chaos

import (
	"testing"
	"time"
)

// TestBroadcastFlood: one client sends 4 KiB messages on /broadcast as fast
// as the server takes them, for 10 s, to 100 readers that read as fast as
// they can. Every message is fanned out to 100 connections, so the server
// must not queue faster than it sends: its memory may grow by 256 MB at
// most. A reader may be closed for falling behind, but what it gets must be
// in order, with no gap or duplicate.
func TestBroadcastFlood(t *testing.T) {
	s := begin(t, daemonOpts{}, probeOpts{})
	const size, nReaders, dur = 4096, 100, 10 * time.Second
	rd, err := startReaders(s.d.addr, "/broadcast", nReaders, size)
	if err != nil {
		t.Fatalf("readers: %v", err)
	}
	t.Cleanup(rd.stop)
	start := time.Now()
	sent, err := broadcaster(s.d.addr, "/broadcast", size, dur, 0)
	elapsed := time.Since(start)
	if err != nil {
		t.Errorf("broadcaster, after %d messages: %v", sent, err)
	}
	// The readers get what the server still holds for them.
	drained, caughtUp := settleCounter(&rd.msgs, time.Second, 20*time.Second)
	rd.stop()
	got := rd.msgs.Load()
	s.r.notef("broadcast flood: %d messages of 4 KiB in %s (%.0f/s, %.1f MB/s in); %d deliveries to %d readers (%.0f/s, %.1f%% of %d), the last of them %s after the sender stopped; %d readers ended by the server (%s)",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), float64(sent*size)/MB/elapsed.Seconds(),
		got, nReaders, float64(got)/(elapsed+drained).Seconds(), 100*float64(got)/float64(max(sent*nReaders, 1)), sent*nReaders,
		drained.Round(time.Millisecond), rd.closed.Load(), rd.codes.String())
	if !caughtUp {
		t.Errorf("the readers were still receiving 20 s after the sender stopped")
	}
	for _, p := range rd.problems {
		t.Errorf("broadcast reader: %s", p)
	}
	if sent == 0 {
		t.Errorf("the broadcaster sent nothing")
	}
	s.endAttack(256 * MB)
	s.finish(true)
}

// settleCounter waits until *n has not moved for quiet, for at most limit,
// and returns when it last moved (from the call) and whether it settled.
func settleCounter(n interface{ Load() int64 }, quiet, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	last, lastChange := n.Load(), start
	for {
		time.Sleep(100 * time.Millisecond)
		if v := n.Load(); v != last {
			last, lastChange = v, time.Now()
		}
		if time.Since(lastChange) >= quiet {
			return lastChange.Sub(start), true
		}
		if time.Since(start) > limit {
			return lastChange.Sub(start), false
		}
	}
}
