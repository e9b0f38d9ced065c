package wsext

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// drainTick is how often Drain closes the connections that have come due:
// the granularity of its spreading.
const drainTick = 10 * time.Millisecond

// Drain stops the server like Shutdown, but spreads the closes over period
// so that the clients, which reconnect when closed, do not all come back at
// once (nats-server's lame duck mode). New upgrades are refused (503) from
// the start. The connections open then are taken in random order and
// closed evenly over period: the k-th of n at period*k/n, each with
// OnShutdown, then a close frame with code (CloseServiceRestart for a
// restart) and the reason "service restart", then OnClose once its peer
// answered or closeGrace passed. An upgrade that completes after Drain
// began gets Shutdown's treatment, a close 1001 at once. A period of zero
// or less closes every connection at once, as Shutdown does.
//
// Drain returns when every connection has ended, or ctx.Err() when ctx ends
// first, after closing the rest at once without a close frame. ctx should
// allow period and a few seconds for the close handshakes.
func (s *Server) Drain(ctx context.Context, period time.Duration, code int) error {
	s.shutdown.Store(true)
	var conns []*Conn
	s.reg.each(func(c *Conn) { conns = append(conns, c) })
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })

	var wg sync.WaitGroup
	closeConn := func(c *Conn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cbMu.Lock()
			if c.state.Load() == stateOpen && c.settings.OnShutdown != nil {
				c.safely(c.settings.OnShutdown)
			}
			c.unlock()
			c.CloseWithCode(code, "service restart")
		}()
	}
	n := len(conns)
	start := time.Now()
	tick := time.NewTicker(drainTick)
	defer tick.Stop()
	for next := 0; next < n; {
		due := n
		if elapsed := time.Since(start); period > 0 && elapsed < period {
			due = min(n, int(int64(n)*int64(elapsed)/int64(period))+1)
		}
		for ; next < due; next++ {
			closeConn(conns[next])
		}
		if next == n {
			break
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return s.abortAll(ctx)
		case <-tick.C:
		}
	}
	wg.Wait()
	for s.Count() > 0 {
		select {
		case <-ctx.Done():
			return s.abortAll(ctx)
		case <-tick.C:
		}
	}
	return nil
}

// abortAll ends every connection left at once, without a close frame, and
// returns ctx's error.
func (s *Server) abortAll(ctx context.Context) error {
	s.reg.each(func(c *Conn) { c.abort() })
	for s.Count() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	return ctx.Err()
}
