package pubsub_test

// The end-to-end tests run the real wsd binary (a master and its workers on
// 127.0.0.1) and a real redis-server, with coder/websocket clients.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsdBin is the wsd binary built by TestMain.
var wsdBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "wsd-pubsub-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	wsdBin = filepath.Join(dir, "wsd")
	// A race-enabled test binary builds a race-enabled wsd: the packages
	// are compiled that way already, and the daemons get checked too.
	args := []string{"build", "-o", wsdBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/wsd-server/wsd/cmd/wsd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building wsd: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// daemon is one `wsd serve` under test.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:port
	logs   string
	notify *notify
	exited chan struct{}
}

// startDaemon starts `wsd serve` on a free port of 127.0.0.1 with the
// given extra flags and waits until every worker serves. It is stopped at
// the end of the test.
func startDaemon(t testing.TB, processes int, args ...string) *daemon {
	t.Helper()
	if wsdBin == "" {
		t.Skip("end-to-end test: needs the wsd binary, which -short does not build")
	}
	notify := notifySocket(t)
	d := &daemon{t: t, notify: notify, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), exited: make(chan struct{})}
	_, port, _ := net.SplitHostPort(d.addr)
	args = append([]string{"serve", "--address", "127.0.0.1", "--port", port, "--processes", strconv.Itoa(processes),
		"--log-format", "json", "--shutdown-timeout", "3s"}, args...)
	d.cmd = exec.Command(wsdBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSD_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			d.cmd.Env = append(d.cmd.Env, kv)
		}
	}
	d.cmd.Env = append(d.cmd.Env, "NOTIFY_SOCKET="+notify.path)
	logf, err := os.Create(filepath.Join(t.TempDir(), "wsd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.logs = logf.Name()
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(d.stop)
	d.waitNotify("READY=1", 20*time.Second)
	return d
}

// stop stops the daemon gracefully, or kills it and its workers.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
	// Workers of a killed master stop on their own; these are this test
	// binary's, so make sure.
	for _, pid := range procsOf(wsdBin, d.cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if d.t.Failed() {
		d.t.Logf("wsd log (%s):\n%s", d.addr, d.logText())
	}
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(d.logs)
	return string(b)
}

// procsOf returns the live processes running bin whose parent is ppid.
func procsOf(bin string, ppid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, dir := range dirs {
		exe, err := os.Readlink(dir + "/exe")
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != bin {
			continue
		}
		stat, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			pid, _ := strconv.Atoi(filepath.Base(dir))
			pids = append(pids, pid)
		}
	}
	return pids
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type notify struct {
	path string
	msgs chan []string // each datagram's lines
}

// notifySocket stands in for systemd's notification socket.
func notifySocket(t testing.TB) *notify {
	t.Helper()
	dir, err := os.MkdirTemp("", "wsdn") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notify{path: filepath.Join(dir, "notify"), msgs: make(chan []string, 64)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- strings.Split(string(buf[:k]), "\n")
		}
	}()
	return n
}

// waitNotify waits for a notification with the line want.
func (d *daemon) waitNotify(want string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case lines := <-d.notify.msgs:
			if slices.Contains(lines, want) {
				return
			}
		case <-d.exited:
			d.t.Fatalf("wsd exited before %s:\n%s", want, d.logText())
		case <-deadline:
			d.t.Fatalf("no %s within %s:\n%s", want, timeout, d.logText())
		}
	}
}

// client is a /pubsub WebSocket that records what it receives.
type client struct {
	*websocket.Conn
	worker int // Wsd-Worker of the 101

	mu    sync.Mutex
	msgs  []string
	types []websocket.MessageType
	code  websocket.StatusCode // the close code, once ended
	ended chan struct{}
}

// dialPubSub connects to /pubsub/{channel} on addr.
func dialPubSub(t *testing.T, addr, channel string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/pubsub/"+channel, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
	if err != nil {
		t.Fatalf("dial /pubsub/%s on %s: %v", channel, addr, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	cl := &client{Conn: c, ended: make(chan struct{})}
	if cl.worker, err = strconv.Atoi(resp.Header.Get("Wsd-Worker")); err != nil {
		t.Fatalf("Wsd-Worker of the 101: %v", err)
	}
	go cl.read()
	return cl
}

func (c *client) read() {
	defer close(c.ended)
	for {
		typ, data, err := c.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.code = websocket.CloseStatus(err)
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, string(data))
		c.types = append(c.types, typ)
		c.mu.Unlock()
	}
}

func (c *client) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func (c *client) has(msg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.msgs, msg)
}

// typeOf returns the type of the first message msg, or 0.
func (c *client) typeOf(msg string) websocket.MessageType {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.msgs, msg); i >= 0 {
		return c.types[i]
	}
	return 0
}

func (c *client) hasPrefix(prefix string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.msgs, func(m string) bool { return strings.HasPrefix(m, prefix) })
}

func (c *client) send(t *testing.T, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
}

// dialOn dials /pubsub/{channel} until it gets a connection to a worker
// that want accepts; the others are closed.
func dialOn(t *testing.T, addr, channel string, want func(worker int) bool) *client {
	t.Helper()
	for range 200 {
		c := dialPubSub(t, addr, channel)
		if want(c.worker) {
			return c
		}
		c.CloseNow()
	}
	t.Fatalf("200 connections to %s and none reached the wanted worker", addr)
	return nil
}

// publish is POST /publish/{channel}; it returns the status.
func publish(t *testing.T, addr, channel, body string, header ...string) int {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/publish/"+channel, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("POST /publish/%s: %v", channel, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// waitUntil polls cond every 20ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe makes sure the subscriptions of subs reach a publisher: it
// publishes probes ("probe:<tag>:<n>") with pub until every client in subs
// has received one. A subscription through an engine takes effect a round
// trip after the connection opens, and a subscriber that got one probe
// gets everything the publisher sends after it.
func probe(t *testing.T, tag string, pub func(msg string), subs []*client) {
	t.Helper()
	prefix := "probe:" + tag + ":"
	n := 0
	waitUntil(t, 15*time.Second, "every subscriber to hear from "+tag, func() bool {
		n++
		pub(prefix + strconv.Itoa(n))
		time.Sleep(20 * time.Millisecond)
		for _, s := range subs {
			if !s.hasPrefix(prefix) {
				return false
			}
		}
		return true
	})
}

// checkOrder checks that c received msgs "<tag>:0" to "<tag>:<n-1>" for
// each tag, in order, and nothing else but probes.
func checkOrder(t *testing.T, name string, c *client, n int, tags ...string) {
	t.Helper()
	next := make(map[string]int)
	for _, m := range c.received() {
		if strings.HasPrefix(m, "probe:") {
			continue
		}
		tag, num, _ := strings.Cut(m, ":")
		if !slices.Contains(tags, tag) {
			t.Errorf("%s received %q, want only messages from %v", name, m, tags)
			return
		}
		if num != strconv.Itoa(next[tag]) {
			t.Errorf("%s received %q after %s:%d", name, m, tag, next[tag]-1)
			return
		}
		next[tag]++
	}
	for _, tag := range tags {
		if next[tag] != n {
			t.Errorf("%s received %d of %d messages from %s", name, next[tag], n, tag)
		}
	}
}

// total counts the non-probe messages c received.
func (c *client) total() int {
	n := 0
	for _, m := range c.received() {
		if !strings.HasPrefix(m, "probe:") {
			n++
		}
	}
	return n
}
