//go:build chaos

package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// redisServer is a redis-server of this test's own, on a free port of
// 127.0.0.1, with persistence off. It can be frozen, killed and started
// again on the same port.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// startRedis starts a redis-server, or skips the test, saying why (in the
// log and in r), when none is installed.
func startRedis(t *testing.T, r *report) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		r.notef("skipped: needs redis-server on PATH (Debian: apt-get install redis-server)")
		t.Skipf("%v", err)
	}
	rs := &redisServer{t: t, bin: bin, port: freePort(t), dir: t.TempDir()}
	t.Cleanup(rs.kill)
	rs.start()
	return rs
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// start starts the server on its port and waits until it answers PING.
func (r *redisServer) start() {
	r.t.Helper()
	logf, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--loglevel", "warning", "--dir", r.dir)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	if _, ok := eventually(10*time.Second, func() bool { return r.ping() == nil }); !ok {
		r.t.Fatalf("redis-server on port %d does not answer PING: %v", r.port, r.ping())
	}
}

// ping sends PING on a new connection and expects +PONG.
func (r *redisServer) ping() error {
	c, err := net.DialTimeout("tcp4", r.addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// signal sends sig to the running server (SIGSTOP freezes it, SIGCONT thaws it).
func (r *redisServer) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("%v to redis-server: %v", sig, err)
	}
}

// kill ends the server at once and waits for it.
func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGCONT) // in case it is frozen
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// subscriber is a /pubsub WebSocket that records the numbered messages
// ("m<N>") it receives.
type subscriber struct {
	c      *websocket.Conn
	worker int
	mu     sync.Mutex
	got    []int
	err    error
}

func (s *subscriber) read() {
	for range 1_000_000 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, msg, err := s.c.Read(ctx)
		cancel()
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		if n, err := strconv.Atoi(strings.TrimPrefix(string(msg), "m")); err == nil && strings.HasPrefix(string(msg), "m") {
			s.got = append(s.got, n)
		}
		s.mu.Unlock()
	}
}

func (s *subscriber) last() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		return 0
	}
	return s.got[len(s.got)-1]
}

// subscribeEvery opens /pubsub/channel WebSockets until every worker of d
// has perWorker of them.
func subscribeEvery(t *testing.T, d *daemon, channel string, perWorker int) []*subscriber {
	t.Helper()
	per := map[int]int{}
	var subs []*subscriber
	for range 50 {
		if len(subs) == perWorker*d.processes {
			return subs
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, resp, err := websocket.Dial(ctx, "ws://"+d.addr+"/pubsub/"+channel, &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		})
		cancel()
		if err != nil {
			t.Fatalf("subscriber: %v", err)
		}
		w, _ := strconv.Atoi(resp.Header.Get("Wsd-Worker"))
		if per[w] >= perWorker {
			c.CloseNow()
			continue
		}
		per[w]++
		t.Cleanup(func() { c.CloseNow() })
		s := &subscriber{c: c, worker: w}
		go s.read()
		subs = append(subs, s)
	}
	t.Fatalf("after 50 connections, subscribers per worker: %v", per)
	return nil
}

// poster publishes "m<N>" with POST /publish, one at a time, so that each
// subscriber must see the numbers it gets in increasing order.
type poster struct {
	addr, channel string
	next          int
	answers       map[int]string // message number → "204 from worker W", "503 from worker W", "no answer"
}

// postResult counts the answers of a series of POSTs.
type postResult struct {
	ok, unavailable, other int
	others                 errKinds
	slowest                time.Duration
}

func (r *postResult) String() string {
	return fmt.Sprintf("%d × 204, %d × 503, %d other (%s); slowest answer %s",
		r.ok, r.unavailable, r.other, r.others.String(), r.slowest.Round(time.Millisecond))
}

// post publishes the next message and returns its number and the status
// (0 when there was no answer within 10 s).
func (p *poster) post(res *postResult) (int, int) {
	p.next++
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	start := time.Now()
	resp, err := client.Post("http://"+p.addr+"/publish/"+p.channel, "text/plain", strings.NewReader("m"+strconv.Itoa(p.next)))
	res.slowest = max(res.slowest, time.Since(start))
	if p.answers == nil {
		p.answers = map[int]string{}
	}
	if err != nil {
		res.other++
		res.others.add(err)
		p.answers[p.next] = "no answer"
		return p.next, 0
	}
	p.answers[p.next] = fmt.Sprintf("%d from worker %s", resp.StatusCode, resp.Header.Get("Wsd-Worker"))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		res.ok++
	case http.StatusServiceUnavailable:
		res.unavailable++
	default:
		res.other++
		res.others.add(fmt.Errorf("status %d", resp.StatusCode))
	}
	return p.next, resp.StatusCode
}

// postFor posts every 100 ms for d.
func (p *poster) postFor(d time.Duration) *postResult {
	res := &postResult{}
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end) && i < 1000; i++ {
		p.post(res)
		time.Sleep(100 * time.Millisecond)
	}
	return res
}

// awaitDelivery posts until a message reaches every subscriber (each post
// gets 1 s), for at most timeout, and returns how long that took.
func (p *poster) awaitDelivery(subs []*subscriber, timeout time.Duration) (time.Duration, bool) {
	res := &postResult{}
	return eventually(timeout, func() bool {
		n, code := p.post(res)
		if code != http.StatusNoContent {
			return false
		}
		_, ok := eventually(time.Second, func() bool {
			for _, s := range subs {
				if s.last() < n {
					return false
				}
			}
			return true
		})
		return ok
	})
}

// TestRedisOutage: a daemon of 2 workers with --redis, subscribers on both
// workers, and a back-end that POSTs numbered messages. Redis is frozen
// (SIGSTOP) for 6 s, thawed, then killed for 6 s and started again.
// During each outage publishes must fail visibly (503, and close 1013 for a
// /pubsub publisher), the daemon's failure log lines must stay at about one
// a second for each kind and process, and delivery must resume after each
// outage. As the README's guarantees say, no subscriber gets a message
// twice, the messages that were published (204) arrive in order, and a
// publish answered 503 is "maybe delivered": it may arrive late, once.
func TestRedisOutage(t *testing.T) {
	r := newReport(t)
	rs := startRedis(t, r)
	s := &scene{t: t, r: r}
	s.d = startDaemon(t, daemonOpts{processes: 2, args: []string{"--redis", rs.url()}})
	s.p = startProbe(t, s.d, probeOpts{subs: -1}) // pub/sub is what fails here: the probe echoes
	const channel = "outage"
	subs := subscribeEvery(t, s.d, channel, 2)
	s.baseline()
	pub := &poster{addr: s.d.addr, channel: channel}
	if took, ok := pub.awaitDelivery(subs, 10*time.Second); !ok {
		t.Fatalf("no message reached every subscriber through Redis within 10 s")
	} else {
		r.notef("delivery to all %d subscribers (2 per worker) took %s to start", len(subs), took.Round(time.Millisecond))
	}

	logFrom := s.d.logSize()
	outageStart := time.Now()

	// Frozen: connections stay open, nothing answers.
	rs.signal(syscall.SIGSTOP)
	frozen := pub.postFor(6 * time.Second)
	rs.signal(syscall.SIGCONT)
	r.notef("Redis frozen for 6 s: POSTs %s", frozen)
	if took, ok := pub.awaitDelivery(subs, 20*time.Second); ok {
		r.notef("delivery resumed %s after SIGCONT", took.Round(time.Millisecond))
	} else {
		t.Errorf("delivery did not resume within 20 s of SIGCONT to Redis")
	}

	// Killed: connections refused.
	rs.kill()
	killed := pub.postFor(6 * time.Second)
	wsCode := publishOverWS(s.d.addr, channel)
	rs.start()
	r.notef("Redis killed for 6 s: POSTs %s; a /pubsub publisher was closed with %s", killed, wsCode)
	if took, ok := pub.awaitDelivery(subs, 20*time.Second); ok {
		r.notef("delivery resumed %s after Redis restarted", took.Round(time.Millisecond))
	} else {
		t.Errorf("delivery did not resume within 20 s of Redis restarting")
	}
	outage := time.Since(outageStart)

	if frozen.unavailable == 0 {
		t.Errorf("while Redis was frozen no POST failed visibly: %s", frozen)
	}
	if killed.unavailable == 0 || killed.ok > 0 {
		t.Errorf("while Redis was down, POSTs got %s; each must fail with 503", killed)
	}
	if frozen.other > 0 || killed.other > 0 {
		t.Errorf("some POSTs got neither 204 nor 503 (or no answer within 10 s): frozen %s; killed %s", frozen, killed)
	}
	if wsCode != websocket.StatusTryAgainLater.String() {
		t.Errorf("a /pubsub publisher while Redis was down was closed with %s, want StatusTryAgainLater (1013)", wsCode)
	}
	for i, sub := range subs {
		sub.mu.Lock()
		got, err := append([]int(nil), sub.got...), sub.err
		sub.mu.Unlock()
		if err != nil {
			t.Errorf("subscriber %d (worker %d) was cut off: %v", i, sub.worker, err)
		}
		// A publish answered 503 is "maybe delivered": a Redis that was
		// frozen, not dead, had the PUBLISH in its socket buffer and runs
		// it when it resumes, after later messages (docs/pubsub.md § Guarantees).
		// Those may come late, once; what succeeded must come in order.
		seen := map[int]bool{}
		late, last := 0, -1
		for _, n := range got {
			if seen[n] {
				t.Errorf("subscriber %d (worker %d) got message %d twice", i, sub.worker, n)
				break
			}
			seen[n] = true
			if !strings.HasPrefix(pub.answers[n], "204 ") {
				if strings.HasPrefix(pub.answers[n], "503 ") && pub.answers[n] != fmt.Sprintf("503 from worker %d", sub.worker) {
					late++
				}
				continue
			}
			if n < last {
				t.Errorf("subscriber %d (worker %d) got message %d (answered %s) after message %d: published messages reordered",
					i, sub.worker, n, pub.answers[n], last)
				break
			}
			last = n
		}
		if late > 0 {
			t.Logf("subscriber %d (worker %d): %d publishes answered 503 elsewhere arrived once Redis resumed (allowed: maybe delivered)", i, sub.worker, late)
		}
	}
	checkLogRate(t, r, s.d, logFrom, outage)
	s.endAttack(0)
	s.finish(true)
}

// publishOverWS opens a /pubsub publisher, sends one message and returns
// the close status the daemon ends it with, or "open" if it does not
// within 5 s.
func publishOverWS(addr, channel string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/"+channel, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("ws-publish")); err != nil {
		return "write: " + err.Error()
	}
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != -1 {
				return code.String()
			}
			if ctx.Err() != nil {
				return "open"
			}
			return "no close frame: " + errKind(err)
		}
	}
}

// checkLogRate fails the test if, in the daemon's log from byte offset
// from on, one process wrote more than about one warning or error a second
// of the same kind (message) over window. It also wants at least one: the
// failures must be visible in the log.
func checkLogRate(t *testing.T, r *report, d *daemon, from int64, window time.Duration) {
	t.Helper()
	lines, _ := d.logLines(from)
	type kind struct {
		pid int
		msg string
	}
	counts := map[kind]int{}
	total := 0
	for _, l := range lines {
		k := kind{pid: l.Worker + l.Master, msg: l.Msg}
		switch {
		case l.Msg == "":
			k.msg = "(not JSON) " + strings.Join(strings.Fields(l.raw), " ")
			if len(k.msg) > 60 {
				k.msg = k.msg[:60]
			}
		case l.Level != "WARN" && l.Level != "ERROR":
			continue
		}
		counts[k]++
		total++
	}
	limit := int(window.Seconds()) + 2
	var b strings.Builder
	for k, n := range counts {
		fmt.Fprintf(&b, "[%d %q ×%d] ", k.pid, k.msg, n)
	}
	r.notef("%d warning/error lines in %s of outage, at most %d allowed per kind and process: %s", total, window.Round(time.Second), limit, b.String())
	for k, n := range counts {
		if n > limit {
			t.Errorf("process %d logged %q %d times in %s: more than one a second", k.pid, k.msg, n, window.Round(time.Second))
		}
	}
	if total == 0 {
		t.Errorf("the daemon logged no warning or error about the Redis outage")
	}
}
