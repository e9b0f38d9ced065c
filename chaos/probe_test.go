//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// probeMaxMessages bounds what one probe client sends: far more than a
// scenario's minute allows at the probe's pace.
const probeMaxMessages = 100_000

// probeTimeout is the longest any probe message may take: an echo's round
// trip, or the wait of a subscriber for the next message of a publisher
// that sends every few milliseconds. Longer is harm.
const probeTimeout = 5 * time.Second

// probeOpts shape the good clients of a scenario.
type probeOpts struct {
	echo  int           // echo clients on /; 0 means 3, -1 none
	subs  int           // subscribers of one /pubsub channel fed by one publisher; 0 means 2, -1 none
	avoid int           // a worker pid no probe client may be connected to (0: any worker)
	every time.Duration // pause between two messages of one client; 0 means 20 ms
}

// probe is a few well-behaved clients that exchange numbered messages for
// the whole scenario and record anything that goes wrong: an error, a
// message lost, repeated or out of order, a wait over probeTimeout. They
// never reconnect, so a probe client cut off by an attack is an error.
type probe struct {
	t       *testing.T
	addr    string
	o       probeOpts
	channel string
	stopc   chan struct{}
	wg      sync.WaitGroup
	conns   []*websocket.Conn

	echoes    atomic.Int64 // round trips
	published atomic.Int64 // messages the publisher sent
	delivered atomic.Int64 // messages the subscribers got
	final     atomic.Int64 // the publisher's last sequence number

	mu      sync.Mutex
	errs    []string
	maxRTT  time.Duration
	maxWait time.Duration
	workers map[int]int // probe connections per worker pid
	synced  int         // subscribers that saw the publisher's sync message
}

// probeResult is what a probe did.
type probeResult struct {
	echoClients, subscribers int
	echoes                   int64
	published, delivered     int64
	maxRTT, maxWait          time.Duration
	workers                  map[int]int
	errs                     []string
}

func (r probeResult) String() string {
	return fmt.Sprintf("%d echo clients: %d round trips, max RTT %s; %d subscribers: %d published, %d delivered, max wait %s; connections per worker %v; %d errors",
		r.echoClients, r.echoes, r.maxRTT.Round(time.Millisecond), r.subscribers, r.published, r.delivered,
		r.maxWait.Round(time.Millisecond), r.workers, len(r.errs))
}

// short is the summary table's version.
func (r probeResult) short() string {
	return fmt.Sprintf("%d echoes (max %s), %d/%d delivered (max wait %s), %d errors",
		r.echoes, r.maxRTT.Round(time.Millisecond), r.delivered, r.published*int64(r.subscribers),
		r.maxWait.Round(time.Millisecond), len(r.errs))
}

var probeChannels atomic.Int64

// startProbe connects the probe's clients to d and starts them. It fails
// the test if they cannot connect, or if the subscribers do not hear the
// publisher within 10 s.
func startProbe(t *testing.T, d *daemon, o probeOpts) *probe {
	t.Helper()
	if o.echo == 0 {
		o.echo = 3
	}
	if o.subs == 0 {
		o.subs = 2
	}
	if o.every == 0 {
		o.every = 20 * time.Millisecond
	}
	p := &probe{
		t: t, addr: d.addr, o: o, stopc: make(chan struct{}), workers: map[int]int{},
		channel: fmt.Sprintf("probe-%d-%d", d.pid(), probeChannels.Add(1)),
	}
	t.Cleanup(p.closeAll)
	for i := range max(o.echo, 0) {
		c := p.dial("/")
		p.wg.Go(func() { p.runEcho(i, c) })
	}
	if o.subs > 0 {
		for i := range o.subs {
			c := p.dial("/pubsub/" + p.channel)
			p.wg.Go(func() { p.runSubscriber(i, c) })
		}
		pub := p.dial("/pubsub/" + p.channel)
		// A subscription takes a moment to reach the other processes: the
		// publisher says "sync" until every subscriber has heard it.
		_, ok := eventually(10*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
			defer cancel()
			if err := pub.Write(ctx, websocket.MessageText, []byte("sync")); err != nil {
				t.Fatalf("probe publisher: sync: %v", err)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.synced == o.subs
		})
		if !ok {
			t.Fatalf("probe: %d of %d subscribers heard the publisher within 10 s; errors %v", p.synced, o.subs, p.errors())
		}
		p.wg.Go(func() { p.runPublisher(pub) })
	}
	return p
}

// dial opens one probe connection, on a worker other than o.avoid.
func (p *probe) dial(path string) *websocket.Conn {
	p.t.Helper()
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, resp, err := websocket.Dial(ctx, "ws://"+p.addr+path, &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		})
		cancel()
		if err != nil {
			p.t.Fatalf("probe: dial %s: %v", path, err)
		}
		worker, _ := strconv.Atoi(resp.Header.Get("Wsd-Worker"))
		if p.o.avoid != 0 && worker == p.o.avoid {
			c.CloseNow()
			continue
		}
		c.SetReadLimit(1 << 20)
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.workers[worker]++
		p.mu.Unlock()
		return c
	}
	p.t.Fatalf("probe: 50 connections to %s all went to worker %d", path, p.o.avoid)
	return nil
}

func (p *probe) fail(format string, args ...any) {
	s := time.Now().Format("15:04:05.000 ") + fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.errs = append(p.errs, s)
	p.mu.Unlock()
}

func (p *probe) errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errs)
}

// pause waits between two messages; false means the probe is stopping.
func (p *probe) pause() bool {
	select {
	case <-p.stopc:
		return false
	case <-time.After(p.o.every):
		return true
	}
}

// runEcho sends numbered messages on / and checks each echo.
func (p *probe) runEcho(id int, c *websocket.Conn) {
	for seq := 1; seq <= probeMaxMessages; seq++ {
		msg := fmt.Sprintf("probe echo %d seq %d %s", id, seq, strings.Repeat("x", seq%64))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		err := c.Write(ctx, websocket.MessageText, []byte(msg))
		var typ websocket.MessageType
		var got []byte
		if err == nil {
			typ, got, err = c.Read(ctx)
		}
		cancel()
		rtt := time.Since(start)
		switch {
		case err != nil:
			p.fail("echo client %d, message %d: %v (after %s)", id, seq, err, rtt.Round(time.Millisecond))
			return
		case typ != websocket.MessageText || string(got) != msg:
			p.fail("echo client %d, message %d: sent %q, got %v %.80q", id, seq, msg, typ, got)
			return
		}
		p.echoes.Add(1)
		p.mu.Lock()
		p.maxRTT = max(p.maxRTT, rtt)
		p.mu.Unlock()
		if !p.pause() {
			return
		}
	}
	p.fail("echo client %d: still running after %d messages", id, probeMaxMessages)
}

// runPublisher publishes "seq N" from 1 on, then "end".
func (p *probe) runPublisher(c *websocket.Conn) {
	write := func(msg string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			p.fail("publisher: %q: %v", msg, err)
			return false
		}
		return true
	}
	seq := int64(0)
	defer func() {
		p.final.Store(seq)
		write("end")
	}()
	for seq < probeMaxMessages {
		if !write("seq " + strconv.FormatInt(seq+1, 10)) {
			return
		}
		seq++
		p.published.Add(1)
		if !p.pause() {
			return
		}
	}
}

// runSubscriber checks that the publisher's messages arrive one after the
// other, from seq 1 to the last, then "end".
func (p *probe) runSubscriber(id int, c *websocket.Conn) {
	next := int64(1)
	synced := false
	last := time.Now()
	for range 2 * probeMaxMessages { // syncs and messages
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		typ, msg, err := c.Read(ctx)
		cancel()
		wait := time.Since(last)
		last = time.Now()
		if err != nil {
			p.fail("subscriber %d, waiting for message %d: %v (after %s)", id, next, err, wait.Round(time.Millisecond))
			return
		}
		if synced {
			p.mu.Lock()
			p.maxWait = max(p.maxWait, wait)
			p.mu.Unlock()
		}
		s := string(msg)
		switch {
		case typ != websocket.MessageText:
			p.fail("subscriber %d: a %v message %.40q", id, typ, msg)
			return
		case s == "sync" && next == 1:
			if !synced {
				synced = true
				p.mu.Lock()
				p.synced++
				p.mu.Unlock()
			}
		case s == "end":
			if final := p.final.Load(); next-1 != final {
				p.fail("subscriber %d: got messages up to %d of %d", id, next-1, final)
			}
			return
		case strings.HasPrefix(s, "seq "):
			n, _ := strconv.ParseInt(s[4:], 10, 64)
			if n != next {
				p.fail("subscriber %d: got message %d where %d was due (a gap, a duplicate or a reordering)", id, n, next)
				return
			}
			next++
			p.delivered.Add(1)
		default:
			p.fail("subscriber %d: unexpected message %.40q after message %d", id, s, next-1)
			return
		}
	}
	p.fail("subscriber %d: no end after %d messages", id, 2*probeMaxMessages)
}

// stop stops the clients, closes their connections and returns what they
// did. It takes at most about 2 × probeTimeout.
func (p *probe) stop() probeResult {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	p.wg.Wait()
	p.closeAll()
	p.mu.Lock()
	defer p.mu.Unlock()
	return probeResult{
		echoClients: max(p.o.echo, 0), subscribers: max(p.o.subs, 0),
		echoes: p.echoes.Load(), published: p.published.Load(), delivered: p.delivered.Load(),
		maxRTT: p.maxRTT, maxWait: p.maxWait, workers: maps.Clone(p.workers), errs: slices.Clone(p.errs),
	}
}

// closeAll closes the probe's connections with a close handshake, all at
// once.
func (p *probe) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			if c.Close(websocket.StatusNormalClosure, "") != nil {
				c.CloseNow()
			}
		})
	}
	wg.Wait()
}

// check stops the probe and fails the test unless every client did its
// work without a single error. It records the figures in r.
func (p *probe) check(r *report) probeResult {
	p.t.Helper()
	res := p.stop()
	r.setProbe(res)
	for i, e := range res.errs {
		if i == 10 {
			p.t.Errorf("probe: … %d more errors", len(res.errs)-i)
			break
		}
		p.t.Errorf("probe (a good client) was harmed: %s", e)
	}
	if res.echoClients > 0 && res.echoes < int64(5*res.echoClients) {
		p.t.Errorf("probe: only %d echo round trips for %d clients", res.echoes, res.echoClients)
	}
	if res.subscribers > 0 && res.published < 5 {
		p.t.Errorf("probe: only %d messages published", res.published)
	}
	return res
}

// tryConns opens n new WebSockets on / at once, each on its own TCP
// connection, and echoes one message on each, giving each timeout. It
// returns how many worked and why the others did not.
func tryConns(addr string, n int, timeout time.Duration) (int, *errKinds) {
	var ok atomic.Int64
	errs := &errKinds{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", &websocket.DialOptions{
				HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
			})
			if err != nil {
				errs.add(err)
				return
			}
			defer c.CloseNow()
			msg := []byte("new connection " + strconv.Itoa(i))
			if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
				errs.add(err)
				return
			}
			typ, got, err := c.Read(ctx)
			if err != nil {
				errs.add(err)
				return
			}
			if typ != websocket.MessageText || string(got) != string(msg) {
				errs.add(fmt.Errorf("echo of %q: %q", msg, got))
				return
			}
			ok.Add(1)
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
	return int(ok.Load()), errs
}
