package master

// The end-to-end tests run the real wsd binary: a master and its worker
// processes on 127.0.0.1, driven by real signals and real clients
// (coder/websocket, a different implementation from the server's).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	dir, err := os.MkdirTemp("", "wsd-master-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	wsdBin = filepath.Join(dir, "wsd")
	// A race-enabled test binary builds a race-enabled wsd: the packages
	// are already compiled that way, and the real processes get checked too.
	args := []string{"build", "-o", wsdBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/wsd-server/wsd/cmd/wsd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building wsd: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// needBinary skips a test in -short mode, where TestMain builds nothing.
func needBinary(t *testing.T) {
	t.Helper()
	if wsdBin == "" {
		t.Skip("end-to-end test: needs the wsd binary, which -short does not build")
	}
}

// server is one `wsd serve` under test.
type server struct {
	t      *testing.T
	bin    string
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:port
	logs   string // file holding the master's and workers' stderr
	notify *notifySocket
	exited chan struct{}
	err    error // Wait's error, once exited is closed
}

type serverOpts struct {
	processes int      // 0 means 2; -1 leaves the flag out
	port      int      // default: a free one
	bin       string   // default wsdBin
	args      []string // extra flags
	wrap      []string // a command line to run wsd under, such as unshare
	noNotify  bool
	env       []string // added to the environment (last one wins)
	// bareEnv starts wsd with env as its whole environment, like env -i.
	bareEnv bool
	cred    *syscall.Credential // run the master as this user
}

// startServer starts `wsd serve` on a free port of 127.0.0.1 and waits until
// it reports READY=1. Its processes are killed at the end of the test.
func startServer(t *testing.T, o serverOpts) *server {
	t.Helper()
	s := launch(t, o)
	s.waitNotify("READY=1", 20*time.Second)
	return s
}

// launch starts `wsd serve` without waiting for it.
func launch(t *testing.T, o serverOpts) *server {
	t.Helper()
	needBinary(t)
	if o.bin == "" {
		o.bin = wsdBin
	}
	if o.processes == 0 {
		o.processes = 2
	}
	if o.port == 0 {
		o.port = freePort(t)
	}
	s := &server{t: t, bin: o.bin, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)), exited: make(chan struct{})}
	_, port, _ := net.SplitHostPort(s.addr)
	args := []string{o.bin, "serve", "--address", "127.0.0.1", "--port", port,
		"--log-format", "json", "--log-level", "debug", "--shutdown-timeout", "5s",
		// Reloads drain their old workers quickly unless a test says
		// otherwise (a later flag wins).
		"--drain-period", "500ms"}
	if o.processes > 0 {
		args = append(args, "--processes", strconv.Itoa(o.processes))
	}
	args = append(slices.Concat(o.wrap, args), o.args...)
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Env = append(envWithout(os.Environ(), "NOTIFY_SOCKET=", "WSD_", "WATCHDOG_"), o.env...)
	if o.bareEnv {
		s.cmd.Env = append([]string{}, o.env...)
	}
	if o.cred != nil {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	}
	if !o.noNotify {
		s.notify = newNotifySocket(t)
		s.cmd.Env = append(s.cmd.Env, "NOTIFY_SOCKET="+s.notify.path)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "wsd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.logs = logf.Name()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
		// Workers of a killed master drain and exit on their own; these
		// are ours (the binary is this test's), so kill them now.
		for _, pid := range procsOf(o.bin) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.logs)
			t.Logf("wsd log:\n%s", b)
		}
	})
	return s
}

// pid is the master's pid as the test sees it.
func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v to the master: %v", sig, err)
	}
}

// wait waits for the master to exit and returns its exit code.
func (s *server) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.t.Fatalf("the master did not exit within %s", timeout)
	}
	return s.cmd.ProcessState.ExitCode()
}

// waitNotify waits for a datagram to NOTIFY_SOCKET that contains want as a
// line, and returns the datagram's lines.
func (s *server) waitNotify(want string, timeout time.Duration) []string {
	s.t.Helper()
	if s.notify == nil {
		s.t.Fatal("server started without NOTIFY_SOCKET")
	}
	deadline := time.After(timeout)
	for {
		select {
		case msg := <-s.notify.msgs:
			lines := strings.Split(msg, "\n")
			if slices.Contains(lines, want) {
				return lines
			}
		case <-s.exited:
			s.t.Fatalf("the master exited (%v) before sending %s", s.err, want)
		case <-deadline:
			s.t.Fatalf("no %s on NOTIFY_SOCKET within %s", want, timeout)
		}
	}
}

// workers returns the pids of the master's live children.
func (s *server) workers() []int {
	return slices.DeleteFunc(children(s.pid()), gone)
}

// logLines returns the JSON log lines written so far.
func (s *server) logLines() []map[string]any {
	b, _ := os.ReadFile(s.logs)
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}
	return lines
}

func (s *server) logText() string {
	b, _ := os.ReadFile(s.logs)
	return string(b)
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// notifySocket is a stand-in for systemd's notification socket.
type notifySocket struct {
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	// Unix socket paths are short; t.TempDir's may be too long.
	dir, err := os.MkdirTemp("", "wsdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan string, 64)}
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
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// children returns the pids of pid's child processes.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
	}
	slices.Sort(pids)
	return pids
}

// procState returns the state letter of a process ("R", "S", "Z"...), or ""
// if there is no such process.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name, in parentheses, may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// gone reports whether pid has exited (a zombie counts as gone).
func gone(pid int) bool {
	st := procState(pid)
	return st == "" || st == "Z"
}

// procsOf returns the pids of live processes running the binary bin.
func procsOf(bin string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		exe, err := os.Readlink(d + "/exe")
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != bin {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		if !gone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get does GET / on a new connection and returns the worker's pid.
func get(ctx context.Context, addr string) (int, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 || string(body) != "Hello World!" {
		return 0, fmt.Errorf("GET /: %s %q", resp.Status, body)
	}
	return strconv.Atoi(resp.Header.Get("Wsd-Worker"))
}

// wsConn is a client WebSocket and what the 101 said about its worker.
type wsConn struct {
	*websocket.Conn
	worker      int // Wsd-Worker
	connections int // Wsd-Connections: the worker's Count before this one
}

func dialWS(ctx context.Context, addr string) (*wsConn, error) {
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
	if err != nil {
		return nil, err
	}
	w := &wsConn{Conn: c}
	w.worker, err = strconv.Atoi(resp.Header.Get("Wsd-Worker"))
	if err == nil {
		w.connections, err = strconv.Atoi(resp.Header.Get("Wsd-Connections"))
	}
	if err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("101 headers %v: %w", resp.Header, err)
	}
	return w, nil
}

// echo sends msg and reads it back.
func (w *wsConn) echo(ctx context.Context, msg string) error {
	if err := w.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	typ, got, err := w.Read(ctx)
	if err != nil {
		return err
	}
	if typ != websocket.MessageText || string(got) != msg {
		return fmt.Errorf("echo of %q: got %v %q", msg, typ, got)
	}
	return nil
}

// dialSpread opens WebSockets until every one of pids has at least perWorker
// of them, and returns them grouped by worker.
func dialSpread(t *testing.T, addr string, pids []int, perWorker int) map[int][]*wsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	byWorker := make(map[int][]*wsConn)
	done := func() bool {
		for _, pid := range pids {
			if len(byWorker[pid]) < perWorker {
				return false
			}
		}
		return true
	}
	for i := 0; !done(); i++ {
		if i > 50*perWorker*len(pids) {
			t.Fatalf("after %d connections, the spread is still %v over workers %v", i, counts(byWorker), pids)
		}
		c, err := dialWS(ctx, addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		// One echo proves the connection is open on the server, and counted,
		// before the next one is dialed.
		if err := c.echo(ctx, "hello"); err != nil {
			t.Fatalf("echo on a new connection to worker %d: %v", c.worker, err)
		}
		byWorker[c.worker] = append(byWorker[c.worker], c)
	}
	return byWorker
}

func counts(m map[int][]*wsConn) map[int]int {
	out := make(map[int]int)
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// isRefused reports a connection refused by the kernel: no socket listening.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// loadGen opens connections in a loop until stopped, counting failures.
type loadGen struct {
	mu       sync.Mutex
	ok       int
	failures []string
	workers  map[int]bool
	stop     chan struct{}
	done     chan struct{}
}

// startLoad runs try over and over (at most 5000 times) until stopped.
func startLoad(try func(ctx context.Context) (int, error)) *loadGen {
	g := &loadGen{workers: make(map[int]bool), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for range 5000 {
			select {
			case <-g.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			start := time.Now()
			pid, err := try(ctx)
			cancel()
			g.mu.Lock()
			if err != nil {
				g.failures = append(g.failures, fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err))
			} else {
				g.ok++
				g.workers[pid] = true
			}
			g.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return g
}

func (g *loadGen) finish() (ok int, failures []string, workers map[int]bool) {
	close(g.stop)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ok, g.failures, g.workers
}

func (g *loadGen) seen(pid int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.workers[pid]
}
