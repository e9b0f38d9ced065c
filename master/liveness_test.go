package master

// End-to-end tests of the hardening: hung workers, the systemd watchdog,
// and a daemon that needs no file system.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// logLine returns the first JSON log line with message msg whose worker
// field is pid.
func (s *server) logLine(msg string, pid int) map[string]any {
	for _, l := range s.logLines() {
		if w, _ := l["worker"].(float64); l["msg"] == msg && int(w) == pid {
			return l
		}
	}
	return nil
}

// readyzLog polls /readyz until stopped and keeps what it answered.
type readyzLog struct {
	mu      sync.Mutex
	answers []string // "503 not ready: ..." or "200 ready"
	stop    chan struct{}
	done    chan struct{}
}

func pollReadyz(admin string) *readyzLog {
	r := &readyzLog{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			status, body := adminGetQuiet(admin, "/readyz")
			r.mu.Lock()
			r.answers = append(r.answers, fmt.Sprintf("%d %s", status, strings.TrimSpace(body)))
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *readyzLog) finish() []string {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.answers)
}

// TestWorkerHang stops one of two workers with SIGSTOP. Within the default
// worker timeout (10s) and a margin, the master logs the hang once, kills
// the worker and starts a replacement on the same slot; the requests
// queued meanwhile on the stopped worker's socket are served by the
// replacement; /readyz names the hang until the replacement is ready; and
// every connection afterwards succeeds.
func TestWorkerHang(t *testing.T) {
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	s := startServer(t, serverOpts{processes: 2, args: []string{"--admin-address", admin}})
	pids := s.workers()
	if len(pids) != 2 {
		t.Fatalf("master has children %v, want 2 workers", pids)
	}
	victim, survivor := pids[0], pids[1]
	started := s.logLine("worker started", victim)
	if started == nil {
		t.Fatalf("no 'worker started' line for worker %d", victim)
	}
	slot := started["slot"].(float64)
	t.Cleanup(func() {
		// Ours: a child of the master this test started.
		if !gone(victim) {
			syscall.Kill(victim, syscall.SIGCONT)
		}
	})

	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	eventually(t, 5*time.Second, "the victim to stop", func() bool { return procState(victim) == "T" })
	readyz := pollReadyz(admin)

	// Requests now: those the kernel hashes to the stopped worker's socket
	// wait in its backlog, for the replacement.
	const queued = 16
	results := make(chan error, queued)
	for range queued {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pid, err := get(ctx, s.addr)
			if err == nil && pid == victim {
				err = fmt.Errorf("served by the stopped worker %d", victim)
			}
			results <- err
		}()
	}

	var hang map[string]any
	eventually(t, 25*time.Second, "the master to report the hung worker", func() bool {
		hang = s.logLine("worker hung: no heartbeat; killing it", victim)
		return hang != nil
	})
	detected := time.Since(stopped)
	if hang["slot"].(float64) != slot {
		t.Errorf("the hang was logged for slot %v, want %v", hang["slot"], slot)
	}
	t.Logf("hang detected %s after SIGSTOP", detected.Round(time.Millisecond))

	var replacement int
	eventually(t, 15*time.Second, "a replacement worker on the slot", func() bool {
		for _, pid := range s.workers() {
			if pid != victim && pid != survivor {
				if l := s.logLine("worker ready", pid); l != nil && l["slot"].(float64) == slot {
					replacement = pid
					return true
				}
			}
		}
		return false
	})
	eventually(t, 10*time.Second, "the hung worker to be killed", func() bool { return gone(victim) })
	for range queued {
		select {
		case err := <-results:
			if err != nil {
				t.Errorf("a request made while the worker was stopped: %v", err)
			}
		case <-time.After(70 * time.Second):
			t.Fatal("requests made while the worker was stopped are still waiting")
		}
	}
	eventually(t, 10*time.Second, "/readyz to answer 200", func() bool {
		status, _ := adminGet(t, admin, "/readyz")
		return status == 200
	})
	answers := readyz.finish()
	var notReady []string
	for _, a := range answers {
		if !strings.HasPrefix(a, "200 ") {
			notReady = append(notReady, a)
		}
	}
	// Whether a poll fell in the moment between the kill and the
	// replacement's readiness is up to the scheduler; what it said then
	// is not.
	for _, a := range notReady {
		if !strings.Contains(a, fmt.Sprintf("slot %v", slot)) || !strings.Contains(a, "hung") {
			t.Errorf("/readyz while the slot was empty: %q, want the slot and the hang named", a)
		}
	}
	t.Logf("/readyz: %d answers, %d not ready", len(answers), len(notReady))

	const n = 30
	ok := 0
	served := make(map[int]int)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pid, err := get(ctx, s.addr)
		cancel()
		if err != nil {
			t.Errorf("GET after the replacement: %v", err)
			continue
		}
		ok++
		served[pid]++
	}
	if ok != n {
		t.Errorf("%d of %d connections after the replacement succeeded", ok, n)
	}
	for pid := range served {
		if pid != survivor && pid != replacement {
			t.Errorf("served by worker %d, want %d or %d", pid, survivor, replacement)
		}
	}

	fams := scrape(t, admin)
	if got := sum(fams, "wsd_worker_hangs_total"); got != 1 {
		t.Errorf("wsd_worker_hangs_total = %v, want 1", got)
	}
	if got := labelled(fams, "wsd_worker_up"); !slices.Equal(got, sorted([]int{survivor, replacement})) {
		t.Errorf("workers scraped %v, want %d and %d", got, survivor, replacement)
	}
	hangs := 0
	for _, l := range s.logLines() {
		if l["msg"] == "worker hung: no heartbeat; killing it" {
			hangs++
		}
	}
	if hangs != 1 {
		t.Errorf("the hang was logged %d times, want once", hangs)
	}
}

// TestWorkerTimeoutOff: with --worker-timeout 0 a stopped worker is left
// alone (and the workers send no heartbeats).
func TestWorkerTimeoutOff(t *testing.T) {
	s := startServer(t, serverOpts{processes: 1, args: []string{"--worker-timeout", "0s"}})
	pid := s.workers()[0]
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if strings.Contains(s.logText(), "worker hung") || gone(pid) {
		t.Errorf("a stopped worker was killed with the check off:\n%s", s.logText())
	}
	syscall.Kill(pid, syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := get(ctx, s.addr); err != nil || got != pid {
		t.Errorf("GET after SIGCONT: worker %d, %v; want %d", got, err, pid)
	}
}

// TestWatchdog: with WATCHDOG_USEC set the master sends WATCHDOG=1 every
// half of it; with WATCHDOG_PID naming another process, it sends none; the
// workers see neither variable.
func TestWatchdog(t *testing.T) {
	s := launch(t, serverOpts{processes: 1, env: []string{"WATCHDOG_USEC=1000000"}})
	s.waitNotify("READY=1", 20*time.Second)
	start := time.Now()
	for range 3 {
		s.waitNotify("WATCHDOG=1", 10*time.Second)
	}
	t.Logf("3 WATCHDOG=1 in %s", time.Since(start).Round(time.Millisecond))
	for _, pid := range s.workers() {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(env), "WATCHDOG_") {
			t.Errorf("worker %d inherited the watchdog variables", pid)
		}
	}

	other := launch(t, serverOpts{processes: 1, env: []string{"WATCHDOG_USEC=200000", "WATCHDOG_PID=1"}})
	other.waitNotify("READY=1", 20*time.Second)
	deadline := time.After(2 * time.Second)
	for {
		select {
		case msg := <-other.notify.msgs:
			if strings.Contains(msg, "WATCHDOG=1") {
				t.Fatalf("WATCHDOG=1 sent although WATCHDOG_PID names another process: %q", msg)
			}
			continue
		case <-deadline:
		}
		break
	}
}

// TestNoFilesLeft: a master killed with SIGKILL leaves nothing in its
// TMPDIR nor a /tmp/wsd-<pid>, having used neither while it ran, and the
// daemon starts again on the same port.
func TestNoFilesLeft(t *testing.T) {
	tmp := t.TempDir()
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	args := []string{"--admin-address", admin}
	s := startServer(t, serverOpts{processes: 2, env: []string{"TMPDIR=" + tmp}, args: args})
	legacy := filepath.Join("/tmp", fmt.Sprintf("wsd-%d", s.pid()))
	noFiles := func(when string) {
		t.Helper()
		if entries, err := os.ReadDir(tmp); err != nil || len(entries) > 0 {
			t.Errorf("%s: TMPDIR holds %v (%v), want nothing", when, entries, err)
		}
		if _, err := os.Lstat(legacy); err == nil {
			t.Errorf("%s: %s exists", when, legacy)
		}
	}
	// Everything that once used the runtime directory: metrics from
	// both workers and the relay's connections.
	eventually(t, 10*time.Second, "both workers' metrics", func() bool {
		return sum(scrape(t, admin), "wsd_worker_up") == 2
	})
	noFiles("while serving")

	workers := s.workers()
	s.signal(syscall.SIGKILL)
	s.wait(5 * time.Second)
	for _, pid := range workers {
		eventually(t, 15*time.Second, fmt.Sprintf("orphaned worker %d to exit", pid), func() bool { return gone(pid) })
	}
	noFiles("after kill -9")

	_, port, _ := net.SplitHostPort(s.addr)
	p, _ := strconv.Atoi(port)
	again := startServer(t, serverOpts{processes: 2, port: p, env: []string{"TMPDIR=" + tmp}, args: args})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 10 {
		if _, err := get(ctx, again.addr); err != nil {
			t.Fatalf("GET after the restart: %v", err)
		}
	}
	eventually(t, 10*time.Second, "both new workers' metrics", func() bool {
		return sum(scrape(t, admin), "wsd_worker_up") == 2
	})
	noFiles("after the restart")
}

// TestBareEnvironment starts wsd the way a FROM scratch image does: an
// empty environment (no HOME, no PATH, no TMPDIR), or one whose TMPDIR
// does not exist, and, when the test runs as root, as uid 65532 with no
// directory it may write. It serves, with the pub/sub relay and metrics
// of both workers.
func TestBareEnvironment(t *testing.T) {
	needBinary(t)
	// uid 65532 must be able to run the binary: a copy in a directory
	// open to all, since the build directory is private.
	dir, err := os.MkdirTemp("", "wsdbare")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "wsd")
	copyFile(t, wsdBin, bin)
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65532, Gid: 65532}
	}
	for _, tt := range []struct {
		name string
		env  []string
	}{
		{"empty", []string{}},
		{"missing TMPDIR", []string{"TMPDIR=" + filepath.Join(dir, "does", "not", "exist")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
			s := launch(t, serverOpts{processes: 2, bin: bin, noNotify: true, bareEnv: true, env: tt.env, cred: cred,
				args: []string{"--admin-address", admin}})
			eventually(t, 20*time.Second, "both workers' metrics", func() bool {
				select {
				case <-s.exited:
					t.Fatalf("the master exited: %v\n%s", s.err, s.logText())
				default:
				}
				fams := scrapeQuiet(admin)
				return len(labelled(fams, "wsd_worker_up")) == 2 && sum(fams, "wsd_worker_up") == 2
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			seen := make(map[int]bool)
			for range 30 {
				pid, err := get(ctx, s.addr)
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				seen[pid] = true
			}
			if cred != nil {
				for _, pid := range append([]int{s.pid()}, s.workers()...) {
					if uid := procUID(t, pid); uid != "65532" {
						t.Errorf("process %d runs as uid %s, want 65532", pid, uid)
					}
				}
			}
			if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", s.pid())); err == nil && len(tt.env) == 0 && len(env) > 0 {
				t.Errorf("the master's environment is %q, want empty", env)
			}
			if strings.Contains(s.logText(), `"level":"ERROR"`) {
				t.Errorf("errors logged:\n%s", s.logText())
			}
			s.signal(syscall.SIGTERM)
			if code := s.wait(15 * time.Second); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
		})
	}
}

// adminGetQuiet is adminGet that reports a failure to connect as status 0.
func adminGetQuiet(admin, path string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + admin + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrapeQuiet is scrape that returns nil when the admin address does not
// answer yet.
func scrapeQuiet(admin string) map[string]*dto.MetricFamily {
	status, body := adminGetQuiet(admin, "/metrics")
	if status != 200 {
		return nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil
	}
	return fams
}

// procUID returns the real uid of pid.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)[0]
		}
	}
	return ""
}

// TestUpgradeKeepsWorkerChannels: after a binary upgrade the re-executed
// master still reaches its adopted workers: it scrapes their metrics over
// their broker sockets and watches their heartbeats on their status pipes.
func TestUpgradeKeepsWorkerChannels(t *testing.T) {
	needBinary(t)
	bin := filepath.Join(t.TempDir(), "wsd")
	copyFile(t, wsdBin, bin)
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	// A timeout shorter than the default keeps the test short, and long
	// enough that a loaded machine does not delay a live worker's beats
	// past it.
	s := startServer(t, serverOpts{processes: 2, bin: bin, args: []string{"--admin-address", admin, "--worker-timeout", "5s"}})
	old := s.workers()
	s.signal(syscall.SIGUSR2)
	s.waitNotify("RELOADING=1", 10*time.Second)
	s.waitNotify("READY=1", 30*time.Second)
	eventually(t, 10*time.Second, "the master to take over", func() bool {
		return strings.Contains(s.logText(), "binary upgrade: took over")
	})
	var adopted []int
	eventually(t, 15*time.Second, "the adopted workers' metrics", func() bool {
		adopted = sorted(s.workers())
		m := scrape(t, admin)
		return len(adopted) == 2 && !slices.Contains(adopted, old[0]) && !slices.Contains(adopted, old[1]) &&
			slices.Equal(labelled(m, "wsd_worker_up"), adopted) && sum(m, "wsd_worker_up") == 2
	})

	victim := adopted[0]
	t.Cleanup(func() {
		if !gone(victim) {
			syscall.Kill(victim, syscall.SIGCONT)
		}
	})
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 25*time.Second, "the upgraded master to report the hung worker", func() bool {
		return s.logLine("worker hung: no heartbeat; killing it", victim) != nil
	})
	eventually(t, 15*time.Second, "a replacement to be scraped", func() bool {
		w := sorted(s.workers())
		m := scrape(t, admin)
		return len(w) == 2 && !slices.Contains(w, victim) && sum(m, "wsd_worker_up") == 2 &&
			slices.Equal(labelled(m, "wsd_worker_up"), w) && sum(m, "wsd_worker_hangs_total") >= 1
	})
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
