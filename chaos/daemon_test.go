//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
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
)

// daemon is one `wsd serve` under test: a master started by this test and
// the workers it starts.
type daemon struct {
	t         *testing.T
	processes int
	port      int
	addr      string // 127.0.0.1:port
	admin     string // --admin-address
	logPath   string // the master's and workers' stdout and stderr
	cmd       *exec.Cmd
	exited    chan struct{}
	waitErr   error // Wait's error, once exited is closed

	mu      sync.Mutex
	seen    map[int]bool    // every worker pid ever observed
	files   map[string]bool // every path its processes were seen to hold
	initial []int           // the workers once the daemon was ready
}

// daemonOpts are the ways a scenario's daemon differs from the defaults.
type daemonOpts struct {
	processes int      // --processes; 0 means 1
	port      int      // 0 picks a free port
	nofile    int      // > 0 runs the daemon under RLIMIT_NOFILE nofile:nofile
	args      []string // more flags
}

// The daemons that run now, so that a leftover check of one does not count
// another's processes.
var (
	runningMu sync.Mutex
	running   = map[*daemon]bool{}
)

// plainHTTP is an HTTP client without keep-alive, so that it leaves no
// connection behind in the daemon.
var plainHTTP = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   5 * time.Second,
}

// startDaemon starts `wsd serve` on 127.0.0.1 and waits until it is ready:
// /readyz answers 200, every worker runs, and GET / says Hello World. The
// daemon is killed at the end of the test if it still runs.
func startDaemon(t *testing.T, o daemonOpts) *daemon {
	t.Helper()
	if wsdBin == "" {
		t.Fatal("no wsd binary: TestMain did not build one")
	}
	if o.processes == 0 {
		o.processes = 1
	}
	if o.port == 0 {
		o.port = freePort(t)
	}
	d := &daemon{
		t:         t,
		processes: o.processes,
		port:      o.port,
		addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)),
		admin:     net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		exited:    make(chan struct{}),
		seen:      map[int]bool{},
		files:     map[string]bool{},
	}
	args := []string{wsdBin, "serve", "--address", "127.0.0.1", "--port", strconv.Itoa(o.port),
		"--processes", strconv.Itoa(o.processes), "--admin-address", d.admin, "--log-format", "json"}
	args = append(args, o.args...)
	if o.nofile > 0 {
		if p, err := exec.LookPath("prlimit"); err == nil {
			args = append([]string{p, fmt.Sprintf("--nofile=%d:%d", o.nofile, o.nofile), "--"}, args...)
		} else {
			args = append([]string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, o.nofile)}, args...)
		}
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSD_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "LISTEN_") {
			d.cmd.Env = append(d.cmd.Env, kv)
		}
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "wsd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.logPath = logf.Name()
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting wsd: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	runningMu.Lock()
	running[d] = true
	runningMu.Unlock()
	t.Cleanup(d.cleanup)

	d.waitReady(20 * time.Second)
	if o.nofile > 0 {
		for _, pid := range append([]int{d.pid()}, d.workers()...) {
			if got := fdLimit(pid); got != o.nofile {
				t.Fatalf("process %d runs with a descriptor limit of %d, not %d", pid, got, o.nofile)
			}
		}
	}
	d.initial = d.workers()
	t.Logf("wsd on %s: master %d, workers %v, admin %s, flags %q; in the file system: %v",
		d.addr, d.pid(), d.initial, d.admin, o.args, d.noteFiles())
	return d
}

// pid is the master's pid.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// runtimeDir is the master's private directory, /tmp/wsd-<master pid>.
func (d *daemon) runtimeDir() string {
	return filepath.Join(os.TempDir(), "wsd-"+strconv.Itoa(d.pid()))
}

// noteFiles remembers, for the leftover check, the paths the daemon's
// processes hold now (files under the temporary directory, unix sockets)
// and returns every path remembered so far.
func (d *daemon) noteFiles() []string {
	for _, p := range append([]int{d.pid()}, d.workers()...) {
		for _, f := range filesOf(p, os.TempDir()) {
			if f == d.logPath { // the test's, not the daemon's
				continue
			}
			d.mu.Lock()
			d.files[f] = true
			d.mu.Unlock()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.files))
}

// hasExited reports whether the master has exited.
func (d *daemon) hasExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// workers returns the master's live children, and remembers them for the
// leftover check.
func (d *daemon) workers() []int {
	if d.hasExited() {
		return nil
	}
	pids := childrenOf(d.pid())
	d.mu.Lock()
	for _, p := range pids {
		d.seen[p] = true
	}
	d.mu.Unlock()
	return pids
}

// waitReady polls until /readyz says 200, every worker runs and GET /
// answers Hello World.
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		if d.hasExited() {
			d.t.Fatalf("wsd exited (%v) before it was ready:\n%s", d.waitErr, d.logTail(40))
		}
		if why = d.notReady(); why == "" {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("wsd not ready within %s: %s\n%s", timeout, why, d.logTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notReady says why the daemon does not serve as it should, or "".
func (d *daemon) notReady() string {
	code, body, err := d.adminGet("/readyz")
	if err != nil || code != 200 {
		return fmt.Sprintf("/readyz: %d %q %v", code, body, err)
	}
	if w := d.workers(); len(w) != d.processes {
		return fmt.Sprintf("%d workers (%v), want %d", len(w), w, d.processes)
	}
	if err := helloWorld(d.addr); err != nil {
		return err.Error()
	}
	return ""
}

// helloWorld does GET / on a new connection.
func helloWorld(addr string) error {
	resp, err := plainHTTP.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(body) != "Hello World!" {
		return fmt.Errorf("GET /: %s %q", resp.Status, body)
	}
	return nil
}

// adminGet does a GET on the admin address.
func (d *daemon) adminGet(path string) (int, string, error) {
	resp, err := plainHTTP.Get("http://" + d.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// metric scrapes /metrics and returns the sum of every sample of name
// (over all labels and workers); ok is false if there is none.
func (d *daemon) metric(name string) (sum float64, ok bool) {
	code, body, err := d.adminGet("/metrics")
	if err != nil || code != 200 {
		return 0, false
	}
	for line := range strings.Lines(body) {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
			ok = true
		}
	}
	return sum, ok
}

// fds returns the number of open descriptors of the master and its
// workers together.
func (d *daemon) fds() int {
	n := fdCount(d.pid())
	for _, p := range d.workers() {
		n += fdCount(p)
	}
	return n
}

// rss returns the resident memory of the master and its workers together.
func (d *daemon) rss() int64 {
	n := rssOf(d.pid())
	for _, p := range d.workers() {
		n += rssOf(p)
	}
	return n
}

// checkAlive fails the test unless the master runs and has all its
// workers, none of them stopped, and the admin address answers /healthz
// and /readyz. With sameWorkers, the workers must be the ones it had once
// ready: none crashed or was replaced.
func (d *daemon) checkAlive(sameWorkers bool) {
	d.t.Helper()
	if d.hasExited() {
		d.t.Fatalf("the master exited: %v\n%s", d.waitErr, d.logTail(40))
	}
	if st, _, _ := procStat(d.pid()); st == "T" || st == "t" {
		d.t.Errorf("the master is stopped (state %s)", st)
	}
	// A replaced worker takes a moment to report ready.
	deadline := time.Now().Add(10 * time.Second)
	for why := d.notReady(); why != ""; why = d.notReady() {
		if time.Now().After(deadline) {
			d.t.Errorf("the daemon does not serve as it should: %s", why)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.noteFiles()
	w := d.workers()
	for _, p := range w {
		if st, _, _ := procStat(p); st == "T" || st == "t" {
			d.t.Errorf("worker %d is stopped (state %s)", p, st)
		}
	}
	if sameWorkers && !slices.Equal(w, d.initial) {
		d.t.Errorf("the workers changed from %v to %v: a worker died or was replaced", d.initial, w)
	}
	if code, body, err := d.adminGet("/healthz"); code != 200 {
		d.t.Errorf("/healthz: %d %q %v", code, body, err)
	}
}

// stop stops the daemon with SIGTERM, fails the test unless it exits with
// status 0 within 20 s, and checks that it left nothing behind.
func (d *daemon) stop() {
	d.t.Helper()
	d.noteFiles() // and the last workers
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Errorf("SIGTERM to the master: %v", err)
	}
	select {
	case <-d.exited:
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			d.t.Errorf("the master exited with status %d after SIGTERM (%v)", code, d.waitErr)
		}
	case <-time.After(20 * time.Second):
		d.t.Errorf("the master did not exit within 20 s of SIGTERM")
		d.cmd.Process.Kill()
		<-d.exited
	}
	d.checkNothingLeft(10 * time.Second)
}

// checkNothingLeft fails the test unless, within timeout, no process of
// the daemon runs any more (the master is reaped by this test; every worker
// it had, and any other process of the binary that belongs to no running
// daemon, must have exited) and nothing of it is left in the file system:
// no /tmp/wsd-<master pid>, none of the files and unix sockets its
// processes were seen to hold.
func (d *daemon) checkNothingLeft(timeout time.Duration) {
	d.t.Helper()
	runningMu.Lock()
	delete(running, d)
	runningMu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		procs, files := d.leftovers()
		if len(procs) == 0 && len(files) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if len(procs) > 0 {
				d.t.Errorf("%s after the master %d ended, processes of the daemon still run: %v", timeout, d.pid(), describe(procs))
			}
			if len(files) > 0 {
				d.t.Errorf("%s after the master %d ended, files of the daemon are left: %v", timeout, d.pid(), files)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leftovers returns the processes of the stopped daemon that still run,
// and what it left in the file system.
func (d *daemon) leftovers() (procs []int, files []string) {
	others := map[int]bool{}
	runningMu.Lock()
	for o := range running {
		others[o.pid()] = true
		for _, p := range childrenOf(o.pid()) {
			others[p] = true
		}
	}
	runningMu.Unlock()
	candidates := processesOf(wsdBin)
	if !builtBinary {
		// Someone else may run that binary: only the processes seen as
		// this daemon's count.
		d.mu.Lock()
		candidates = slices.DeleteFunc(candidates, func(p int) bool { return !d.seen[p] && p != d.pid() })
		d.mu.Unlock()
	}
	for _, p := range candidates {
		if !others[p] {
			procs = append(procs, p)
		}
	}
	if entries, err := os.ReadDir(d.runtimeDir()); err == nil || !os.IsNotExist(err) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		files = append(files, fmt.Sprintf("%s/ %v", d.runtimeDir(), names))
	}
	for _, f := range d.noteFiles() {
		if _, err := os.Lstat(f); err == nil {
			files = append(files, f)
		}
	}
	return procs, files
}

// describe names processes by pid, state and parent.
func describe(pids []int) string {
	var b strings.Builder
	for i, p := range pids {
		st, pp, _ := procStat(p)
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d (state %s, parent %d)", p, st, pp)
	}
	return b.String()
}

// cleanup kills what is left of the daemon at the end of the test: the
// master, and the workers this test saw it start, provided they still run
// the test's binary.
func (d *daemon) cleanup() {
	if !d.hasExited() {
		d.workers()
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
	}
	runningMu.Lock()
	delete(running, d)
	runningMu.Unlock()
	d.mu.Lock()
	seen := slices.Collect(func(yield func(int) bool) {
		for p := range d.seen {
			if !yield(p) {
				return
			}
		}
	})
	d.mu.Unlock()
	for _, p := range seen {
		if runs(p, wsdBin) {
			syscall.Kill(p, syscall.SIGCONT)
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	// What a killed master could not remove (a failed check has said so).
	os.RemoveAll(d.runtimeDir())
	if d.t.Failed() {
		d.t.Logf("wsd log, last lines (%s):\n%s", d.logPath, d.logTail(60))
	}
}

// logTail returns the last n lines of the daemon's log.
func (d *daemon) logTail(n int) string {
	b, _ := os.ReadFile(d.logPath)
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// logLine is one JSON line of the daemon's log.
type logLine struct {
	raw    string
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Msg    string    `json:"msg"`
	Worker int       `json:"worker"`
	Master int       `json:"master"`
}

// logLines returns the daemon's log lines from byte offset from on, and the
// offset after them. Lines that are not JSON come with only raw set.
func (d *daemon) logLines(from int64) ([]logLine, int64) {
	b, _ := os.ReadFile(d.logPath)
	if from > int64(len(b)) {
		from = int64(len(b))
	}
	b = b[from:]
	// Leave a partial last line for the next call.
	end := bytes.LastIndexByte(b, '\n') + 1
	var lines []logLine
	sc := bufio.NewScanner(bytes.NewReader(b[:end]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := logLine{raw: sc.Text()}
		json.Unmarshal(sc.Bytes(), &l)
		lines = append(lines, l)
	}
	return lines, from + int64(end)
}

// logSize returns the current size of the daemon's log.
func (d *daemon) logSize() int64 {
	fi, err := os.Stat(d.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
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

// eventually polls cond every 50 ms for at most timeout and reports
// whether it came true, and when.
func eventually(timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
