//go:build chaos

package chaos

import (
	"testing"
	"time"
)

// Floods of control frames. A ping must be answered with a pong, so a
// client that pings and never reads makes the server queue pongs for it:
// the queue must stay bounded (the slow-reader limit closes the client).
// Pongs nobody asked for and close frames cost the server nothing to
// keep.

// TestPingFlood: 20 clients send pings (125-byte payloads) as fast as they
// can for 10 s and never read. The daemon's memory may grow by 100 MB at
// most.
func TestPingFlood(t *testing.T) {
	s := begin(t, daemonOpts{}, probeOpts{})
	st := flood(s.d.addr, "/", 20, 10*time.Second, controlBlock(opPing))
	s.r.notef("ping flood, 20 clients × 10 s: %s", st)
	s.endAttack(100 * MB)
	s.finish(true)
}

// TestPongFlood: 20 clients send unsolicited pongs as fast as they can
// for 8 s.
func TestPongFlood(t *testing.T) {
	s := begin(t, daemonOpts{}, probeOpts{})
	st := flood(s.d.addr, "/", 20, 8*time.Second, controlBlock(opPong))
	s.r.notef("pong flood, 20 clients × 8 s: %s", st)
	s.endAttack(100 * MB)
	s.finish(true)
}

// TestCloseFlood: 16 clients open a WebSocket and close it, over and over
// for 8 s: politely (every polite close must be answered with close 1000
// and the end of the connection), with data after the close frame, or with
// a reset right after it.
func TestCloseFlood(t *testing.T) {
	s := begin(t, daemonOpts{}, probeOpts{})
	st := closeFlood(s.d.addr, 16, 8*time.Second)
	total := st.polite.Load() + st.rude.Load() + st.abrupt.Load()
	s.r.notef("close flood, 16 clients × 8 s: %d connections (%d polite, %d with data after the close, %d reset); failed upgrades: %s; polite closes answered wrong: %s",
		total, st.polite.Load(), st.rude.Load(), st.abrupt.Load(), st.dialErrs.String(), st.politeErrs.String())
	for _, e := range st.firstErrs {
		t.Errorf("close flood: %s", e)
	}
	if total < 100 {
		t.Errorf("close flood: only %d connections in 8 s", total)
	}
	s.endAttack(100 * MB)
	s.finish(true)
}
