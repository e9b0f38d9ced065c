package pubsub_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsd-server/wsd/pubsub/internal/redistest"
)

// The recovery tests: a publisher publishes a numbered message every 10 ms
// for 10 s while the daemons reload twice (SIGHUP) and lose a worker
// (SIGKILL); subscribers over WebSocket and over SSE that come back with
// the last position they saw must get every message exactly once, in
// order. The publisher does not retry: a publish that failed may or may
// not have been delivered ("a failure means maybe delivered"), so the
// check is on offsets: each subscriber sees every offset from its first to
// the last exactly once, and every acknowledged message at the offset its
// acknowledgement gave.

// resumeRun is the length of the publishing.
const (
	resumeRun      = 10 * time.Second
	resumeInterval = 10 * time.Millisecond
)

// seen is one message as a resuming subscriber got it.
type seen struct {
	offset uint64
	epoch  string
	data   string
}

// resumer is a subscriber that reconnects, from its last position, until
// it has seen the offset it is told to wait for.
type resumer struct {
	name    string
	addrs   []string // tried in turn on each reconnection
	channel string
	sse     bool

	mu       sync.Mutex
	got      []seen
	top      seen // where the first connection started
	started  bool
	connects int
	failures []string // status messages saying recovered:false
	more     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

func newResumer(name, channel string, sse bool, addrs ...string) *resumer {
	r := &resumer{name: name, addrs: addrs, channel: channel, sse: sse,
		more: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

// last returns the position to resume from; ok is false before the first
// status.
func (r *resumer) last() (pos seen, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.got); n > 0 {
		return r.got[n-1], true
	}
	return r.top, r.started
}

func (r *resumer) run() {
	defer close(r.done)
	for i := 0; ; i++ {
		select {
		case <-r.stop:
			return
		default:
		}
		addr := r.addrs[i%len(r.addrs)]
		var err error
		if r.sse {
			err = r.session(addr, r.readSSE)
		} else {
			err = r.session(addr, r.readWS)
		}
		_ = err // every end is a reason to come back
		select {
		case <-r.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// session connects once and reads until the connection ends or stop.
func (r *resumer) session(addr string, read func(ctx context.Context, addr string) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	r.mu.Lock()
	r.connects++
	r.mu.Unlock()
	return read(ctx, addr)
}

// status records a subscription's first message.
func (r *resumer) status(offset uint64, epoch string, recovered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		r.started, r.top = true, seen{offset: offset, epoch: epoch}
	}
	if !recovered {
		r.failures = append(r.failures, fmt.Sprintf("connection %d: not recovered (top %d %s)", r.connects, offset, epoch))
	}
}

func (r *resumer) message(offset uint64, epoch, data string) {
	r.mu.Lock()
	r.got = append(r.got, seen{offset, epoch, data})
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

func (r *resumer) readWS(ctx context.Context, addr string) error {
	url := "ws://" + addr + "/pubsub/" + r.channel + "?format=json"
	if pos, ok := r.last(); ok {
		url += "&offset=" + strconv.FormatUint(pos.offset, 10) + "&epoch=" + pos.epoch
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
	cancel()
	if err != nil {
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var m struct {
			Status    string `json:"status"`
			Offset    uint64 `json:"offset"`
			Epoch     string `json:"epoch"`
			Recovered bool   `json:"recovered"`
			Data      string `json:"data"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("%s: not an envelope: %q", r.name, data)
		}
		if m.Status != "" {
			r.status(m.Offset, m.Epoch, m.Recovered)
			continue
		}
		r.message(m.Offset, m.Epoch, m.Data)
	}
}

func (r *resumer) readSSE(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/sse/"+r.channel, nil)
	if err != nil {
		return err
	}
	if pos, ok := r.last(); ok {
		req.Header.Set("Last-Event-ID", pos.epoch+":"+strconv.FormatUint(pos.offset, 10))
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("GET /sse: %s", resp.Status)
	}
	br := bufio.NewReader(resp.Body)
	var event, id string
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if len(data) > 0 || event != "" {
				epoch, off, _ := strings.Cut(id, ":")
				offset, _ := strconv.ParseUint(off, 10, 64)
				switch event {
				case "status":
					var st struct {
						Offset    uint64 `json:"offset"`
						Epoch     string `json:"epoch"`
						Recovered bool   `json:"recovered"`
					}
					json.Unmarshal([]byte(strings.Join(data, "\n")), &st)
					r.status(st.Offset, st.Epoch, st.Recovered)
				case "":
					r.message(offset, epoch, strings.Join(data, "\n"))
				}
			}
			event, id, data = "", "", nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		}
	}
}

// waitFor waits until the resumer has seen offset, then stops it.
func (r *resumer) waitFor(t *testing.T, offset uint64, timeout time.Duration) {
	t.Helper()
	defer func() {
		close(r.stop)
		<-r.done
	}()
	deadline := time.After(timeout)
	for {
		if pos, _ := r.last(); pos.offset >= offset {
			return
		}
		select {
		case <-r.more:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			pos, _ := r.last()
			t.Fatalf("%s: at offset %d after %s, want %d", r.name, pos.offset, timeout, offset)
		}
	}
}

// waitStarted waits for the first status.
func (r *resumer) waitStarted(t *testing.T) {
	t.Helper()
	waitUntil(t, 15*time.Second, r.name+" subscribed", func() bool {
		_, ok := r.last()
		return ok
	})
}

// check verifies exactly once, in order, against the acknowledgements.
func (r *resumer) check(t *testing.T, acked map[uint64]string, last uint64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.failures {
		t.Errorf("%s: %s", r.name, f)
	}
	next, epoch := r.top.offset+1, r.top.epoch
	if epoch == "" && len(r.got) > 0 {
		epoch = r.got[0].epoch // the channel was new: its first message names the epoch
	}
	for i, m := range r.got {
		if m.offset != next || m.epoch != epoch {
			t.Fatalf("%s: message %d is offset %d epoch %s, want offset %d epoch %s (a gap, a duplicate or a new epoch)",
				r.name, i, m.offset, m.epoch, next, epoch)
		}
		if want, ok := acked[m.offset]; ok && want != m.data {
			t.Fatalf("%s: offset %d holds %q, acknowledged as %q", r.name, m.offset, m.data, want)
		}
		next++
	}
	if next-1 != last {
		t.Fatalf("%s: ended at offset %d, want %d", r.name, next-1, last)
	}
	t.Logf("%s: offsets %d..%d once each, in order, over %d connections", r.name, r.top.offset+1, last, r.connects)
}

// publisher POSTs "n:<i>" every resumeInterval for resumeRun, round robin
// over addrs; it returns the acknowledged offsets and the failures.
func publisher(t *testing.T, channel string, addrs ...string) (acked map[uint64]string, epoch string, failed int) {
	acked = make(map[uint64]string)
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(resumeInterval)
	defer tick.Stop()
	end := time.Now().Add(resumeRun)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		body := "n:" + strconv.Itoa(i)
		resp, err := client.Post("http://"+addrs[i%len(addrs)]+"/publish/"+channel, "text/plain", strings.NewReader(body))
		if err != nil {
			failed++
			continue
		}
		var pos struct {
			Offset uint64 `json:"offset"`
			Epoch  string `json:"epoch"`
		}
		err = json.NewDecoder(resp.Body).Decode(&pos)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			failed++
			continue
		}
		if epoch != "" && pos.Epoch != epoch {
			t.Fatalf("the epoch changed from %s to %s during the run", epoch, pos.Epoch)
		}
		epoch = pos.Epoch
		if prev, dup := acked[pos.Offset]; dup {
			t.Fatalf("offset %d acknowledged twice: %q and %q", pos.Offset, prev, body)
		}
		acked[pos.Offset] = body
	}
	return acked, epoch, failed
}

// resumeScenario runs the publisher against addrs with the subscribers,
// while faults runs its disruptions, and checks every subscriber.
func resumeScenario(t *testing.T, channel string, pubAddrs []string, subs []*resumer, faults func()) {
	for _, r := range subs {
		r.waitStarted(t)
	}
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		faults()
	}()
	acked, _, failed := publisher(t, channel, pubAddrs...)
	<-faultsDone
	var last uint64
	for off := range acked {
		last = max(last, off)
	}
	if len(acked) < int(resumeRun/resumeInterval)/2 {
		t.Fatalf("only %d publishes acknowledged (%d failed)", len(acked), failed)
	}
	t.Logf("%d publishes acknowledged, %d failed, last offset %d", len(acked), failed, last)
	for _, r := range subs {
		r.waitFor(t, last, 30*time.Second)
	}
	for _, r := range subs {
		r.check(t, acked, last)
	}
}

// killWorker SIGKILLs one of the master's current workers.
func killWorker(t *testing.T, d *daemon) {
	pids := procsOf(wsdBin, d.cmd.Process.Pid)
	if len(pids) == 0 {
		t.Errorf("no worker to kill")
		return
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
}

// at runs the faults at their offsets from now.
func at(steps ...func()) func() {
	return func() {
		for _, step := range steps {
			time.Sleep(resumeRun / time.Duration(len(steps)+1))
			step()
		}
	}
}

func TestRecoveryCluster(t *testing.T) {
	d := startDaemon(t, 2, "--history-size", "5000", "--drain-period", "1s")
	const ch = "resume"
	var subs []*resumer
	for i := range 3 {
		subs = append(subs, newResumer(fmt.Sprintf("ws%d", i), ch, false, d.addr))
	}
	for i := range 2 {
		subs = append(subs, newResumer(fmt.Sprintf("sse%d", i), ch, true, d.addr))
	}
	hup := func() { d.cmd.Process.Signal(syscall.SIGHUP) }
	resumeScenario(t, ch, []string{d.addr}, subs, at(hup, func() { killWorker(t, d) }, hup))
}

func TestRecoveryRedis(t *testing.T) {
	r := redistest.Start(t)
	a := startDaemon(t, 2, "--redis", r.URL(), "--history-size", "5000", "--drain-period", "1s")
	b := startDaemon(t, 2, "--redis", r.URL(), "--history-size", "5000", "--drain-period", "1s")
	const ch = "resume"
	var subs []*resumer
	for i := range 3 {
		subs = append(subs, newResumer(fmt.Sprintf("ws%d", i), ch, false, a.addr, b.addr))
	}
	for i := range 2 {
		subs = append(subs, newResumer(fmt.Sprintf("sse%d", i), ch, true, b.addr, a.addr))
	}
	resumeScenario(t, ch, []string{a.addr, b.addr}, subs, at(
		func() { a.cmd.Process.Signal(syscall.SIGHUP) },
		func() { killWorker(t, b) },
		func() { b.cmd.Process.Signal(syscall.SIGHUP) },
	))
}

// TestHistorySenderExcluded: with history, every message comes back to
// every worker from the master, numbered, the sender's worker included; a
// /pubsub sender must still not get its own messages (but its neighbours
// on the same worker must), unless --pubsub-echo.
func TestHistorySenderExcluded(t *testing.T) {
	for _, echo := range []bool{false, true} {
		t.Run(fmt.Sprintf("echo=%v", echo), func(t *testing.T) {
			args := []string{"--history-size", "100"}
			if echo {
				args = append(args, "--pubsub-echo")
			}
			d := startDaemon(t, 2, args...)
			sender := dialPubSub(t, d.addr, "x")
			neighbour := dialOn(t, d.addr, "x", func(w int) bool { return w == sender.worker })
			other := dialOn(t, d.addr, "x", func(w int) bool { return w != sender.worker })
			probe(t, "S", wsPublisher(t, sender), []*client{neighbour, other})
			const n = 20
			for i := range n {
				sender.send(t, "M:"+strconv.Itoa(i))
			}
			other.send(t, "D:0")
			waitUntil(t, 10*time.Second, "every message", func() bool {
				return neighbour.has("M:"+strconv.Itoa(n-1)) && other.has("M:"+strconv.Itoa(n-1)) && sender.has("D:0")
			})
			for name, c := range map[string]*client{"the neighbour": neighbour, "the other worker's subscriber": other} {
				var got []string
				for _, m := range c.received() {
					if strings.HasPrefix(m, "M:") {
						got = append(got, m)
					}
				}
				if len(got) != n {
					t.Fatalf("%s got %d of the %d messages: %v", name, len(got), n, got)
				}
				for i, m := range got {
					if m != "M:"+strconv.Itoa(i) {
						t.Fatalf("%s got %q as message %d", name, m, i)
					}
				}
			}
			if got := sender.hasPrefix("M:"); got != echo {
				t.Fatalf("the sender got its own messages: %v, want %v", got, echo)
			}
		})
	}
}
