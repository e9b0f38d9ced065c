package master

import (
	"context"
	"fmt"
	"net"
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

// readCloses reads each connection until it ends and reports its close code
// (-1 for an end without a close frame).
func readCloses(conns []*wsConn) <-chan websocket.StatusCode {
	out := make(chan websocket.StatusCode, len(conns))
	for _, c := range conns {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					out <- websocket.CloseStatus(err)
					return
				}
			}
		}()
	}
	return out
}

// collectCloses waits for n close codes.
func collectCloses(t *testing.T, ch <-chan websocket.StatusCode, n int, timeout time.Duration) map[websocket.StatusCode]int {
	t.Helper()
	got := make(map[websocket.StatusCode]int)
	deadline := time.After(timeout)
	for range n {
		select {
		case code := <-ch:
			got[code]++
		case <-deadline:
			t.Fatalf("only %v of %d connections ended within %s", got, n, timeout)
		}
	}
	return got
}

// echoLoop echoes on c every few milliseconds until stopped; stop returns
// the first error.
func echoLoop(c *wsConn) (stop func() error) {
	quit := make(chan struct{})
	var err error
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = c.echo(ctx, "ping "+strconv.Itoa(i))
			cancel()
			if err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	return func() error {
		close(quit)
		wg.Wait()
		return err
	}
}

func allConns(m map[int][]*wsConn) []*wsConn {
	var all []*wsConn
	for _, cs := range m {
		all = append(all, cs...)
	}
	return all
}

// TestProcessesSpreadAndCount runs two workers: connections reach both, and
// each worker's Count (the Wsd-Connections header of the 101) sees only its
// own connections.
func TestProcessesSpreadAndCount(t *testing.T) {
	s := startServer(t, serverOpts{processes: 2})
	pids := s.workers()
	if len(pids) != 2 {
		t.Fatalf("master has children %v, want 2 workers", pids)
	}
	byWorker := dialSpread(t, s.addr, pids, 4)
	if len(byWorker) != 2 {
		t.Fatalf("connections reached workers %v, want only %v", counts(byWorker), pids)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for pid, conns := range byWorker {
		// Each 101 carried the worker's Count before that connection; the
		// connections stay open, so a worker counting only its own sees
		// 0, 1, 2... in the order they arrived.
		for i, c := range conns {
			if c.connections != i {
				t.Errorf("worker %d: connection %d carried Wsd-Connections %d, want %d (the worker's own count)", pid, i, c.connections, i)
			}
			if err := c.echo(ctx, fmt.Sprintf("hello %d", i)); err != nil {
				t.Errorf("worker %d: echo: %v", pid, err)
			}
		}
	}

	closes := readCloses(allConns(byWorker))
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Fatalf("master exit code %d, want 0", code)
	}
	collectCloses(t, closes, len(allConns(byWorker)), 10*time.Second)
	// Logs name the process they come from.
	fromWorker := make(map[int]bool)
	for _, l := range s.logLines() {
		if w, ok := l["worker"].(float64); ok && l["master"] == nil {
			fromWorker[int(w)] = true
		}
	}
	for _, pid := range pids {
		if !fromWorker[pid] {
			t.Errorf("no log line from worker %d carries worker=%d", pid, pid)
		}
	}
}

// TestKillWorker kills one worker with SIGKILL while clients on both echo:
// the other worker's clients see nothing, a replacement serves within a
// second, and no connection attempt meanwhile is refused.
func TestKillWorker(t *testing.T) {
	s := startServer(t, serverOpts{processes: 2})
	pids := s.workers()
	if len(pids) != 2 {
		t.Fatalf("master has children %v, want 2 workers", pids)
	}
	victim, survivor := pids[0], pids[1]
	byWorker := dialSpread(t, s.addr, pids, 3)
	stops := make(map[*wsConn]func() error)
	for _, c := range allConns(byWorker) {
		stops[c] = echoLoop(c)
	}

	type attempt struct {
		start time.Time
		err   error
	}
	var mu sync.Mutex
	var attempts []attempt
	firstServed := make(map[int]time.Time)
	load := startLoad(func(ctx context.Context) (int, error) {
		start := time.Now()
		pid, err := get(ctx, s.addr)
		mu.Lock()
		attempts = append(attempts, attempt{start, err})
		if _, ok := firstServed[pid]; err == nil && !ok {
			firstServed[pid] = time.Now()
		}
		mu.Unlock()
		return pid, err
	})
	time.Sleep(100 * time.Millisecond)

	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the killed worker to die", func() bool { return gone(victim) })
	dead := time.Now()
	var replacement int
	eventually(t, 10*time.Second, "a replacement worker to serve", func() bool {
		for _, pid := range s.workers() {
			if pid != victim && pid != survivor && load.seen(pid) {
				replacement = pid
				return true
			}
		}
		return false
	})
	time.Sleep(200 * time.Millisecond)
	load.finish()

	mu.Lock()
	served := firstServed[replacement].Sub(dead)
	var refused, late []string
	for _, a := range attempts {
		switch {
		case a.err == nil:
		case isRefused(a.err):
			refused = append(refused, a.err.Error())
		case a.start.After(dead):
			// Only connections the victim had accepted may fail: those
			// waiting in its socket's backlog belong to the master.
			late = append(late, a.err.Error())
		}
	}
	n := len(attempts)
	mu.Unlock()
	if served > time.Second {
		t.Errorf("the replacement worker %d served %s after the kill, want within 1s", replacement, served)
	}
	if len(refused) > 0 || len(late) > 0 {
		t.Errorf("of %d connection attempts, %d were refused %v and %d started after the kill failed %v", n, len(refused), refused, len(late), late)
	}
	for _, c := range byWorker[survivor] {
		if err := stops[c](); err != nil {
			t.Errorf("a client of the surviving worker %d saw an error: %v", survivor, err)
		}
	}
	for _, c := range byWorker[victim] {
		if err := stops[c](); err == nil {
			t.Errorf("a client of the killed worker %d saw no error", victim)
		}
	}
	if w := s.workers(); len(w) != 2 || !slices.Contains(w, survivor) {
		t.Errorf("workers after the kill: %v, want %d and a replacement", w, survivor)
	}
}

// TestGracefulStop sends SIGTERM with 100 WebSockets open: each gets close
// 1001 after its OnShutdown and before its OnClose, the master exits 0
// within the grace period, and no process is left.
func TestGracefulStop(t *testing.T) {
	s := startServer(t, serverOpts{processes: 2})
	pids := s.workers()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var conns []*wsConn
	perWorker := make(map[int]int)
	for range 100 {
		c, err := dialWS(ctx, s.addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		conns = append(conns, c)
		perWorker[c.worker]++
	}
	if len(perWorker) != 2 {
		t.Fatalf("100 connections reached workers %v, want both of %v", perWorker, pids)
	}
	closes := readCloses(conns)

	start := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(5*time.Second + 2*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("graceful stop took %s, longer than --shutdown-timeout 5s", d)
	}
	if got := collectCloses(t, closes, len(conns), 10*time.Second); got[websocket.StatusGoingAway] != len(conns) {
		t.Errorf("close codes %v, want all %d to be 1001", got, len(conns))
	}
	if left := procsOf(s.bin); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	checkShutdownOrder(t, s, len(conns))
}

// checkShutdownOrder checks, from the workers' debug log, that n WebSockets
// got OnShutdown and that each one's OnClose came after it.
func checkShutdownOrder(t *testing.T, s *server, n int) {
	t.Helper()
	type key struct{ worker, conn float64 }
	shut := make(map[key]bool)
	closedAfter := 0
	for _, l := range s.logLines() {
		w, _ := l["worker"].(float64)
		c, ok := l["conn"].(float64)
		if !ok {
			continue
		}
		k := key{w, c}
		switch l["msg"] {
		case "websocket shutdown":
			shut[k] = true
		case "websocket closed":
			if !shut[k] {
				t.Errorf("worker %v conn %v: OnClose without OnShutdown before it", w, c)
				continue
			}
			closedAfter++
		}
	}
	if len(shut) != n || closedAfter != n {
		t.Errorf("log shows %d OnShutdown and %d OnClose after them, want %d each (debug lines \"websocket shutdown\" and \"websocket closed\" with worker and conn)", len(shut), closedAfter, n)
	}
}

// TestReload sends SIGHUP while a client opens new connections in a loop:
// not one handshake fails, every worker is replaced, and the connections of
// the old workers get 1012 (Service Restart), spread over the drain period,
// when their worker stops.
func TestReload(t *testing.T) {
	s := startServer(t, serverOpts{processes: 2})
	old := s.workers()
	byWorker := dialSpread(t, s.addr, old, 2)
	oldConns := allConns(byWorker)
	closes := readCloses(oldConns)

	load := startLoad(func(ctx context.Context) (int, error) {
		c, err := dialWS(ctx, s.addr)
		if err != nil {
			return 0, err
		}
		c.CloseNow()
		return c.worker, nil
	})
	time.Sleep(100 * time.Millisecond)
	s.signal(syscall.SIGHUP)
	s.waitNotify("RELOADING=1", 10*time.Second)
	s.waitNotify("READY=1", 20*time.Second)
	time.Sleep(200 * time.Millisecond)
	ok, failures, _ := load.finish()

	if len(failures) > 0 {
		t.Errorf("%d of %d handshakes during the reload failed: %v", len(failures), ok+len(failures), failures)
	}
	if got := collectCloses(t, closes, len(oldConns), 15*time.Second); got[websocket.StatusServiceRestart] != len(oldConns) {
		t.Errorf("old connections closed with %v, want all %d with 1012", got, len(oldConns))
	}
	for _, pid := range old {
		eventually(t, 10*time.Second, fmt.Sprintf("old worker %d to exit", pid), func() bool { return gone(pid) })
	}
	now := s.workers()
	if len(now) != 2 || slices.Contains(now, old[0]) || slices.Contains(now, old[1]) {
		t.Errorf("workers after the reload %v, want two new ones (old %v)", now, old)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := get(ctx, s.addr); err != nil {
		t.Errorf("GET after the reload: %v", err)
	}
}

// TestReloadChangesProcesses reloads a configuration file that asks for
// more workers, then fewer.
func TestReloadChangesProcesses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wsd.toml")
	write := func(n int) {
		if err := os.WriteFile(file, fmt.Appendf(nil, "processes = %d\n", n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	// --processes is a flag, which would win over the file: leave it out.
	s := startServer(t, serverOpts{processes: -1, args: []string{"--config", file}})
	if w := s.workers(); len(w) != 1 {
		t.Fatalf("workers %v, want 1", w)
	}
	for _, n := range []int{3, 1} {
		write(n)
		s.signal(syscall.SIGHUP)
		s.waitNotify("RELOADING=1", 10*time.Second)
		lines := s.waitNotify("READY=1", 20*time.Second)
		if want := fmt.Sprintf("with %d workers", n); !strings.Contains(strings.Join(lines, "\n"), want) {
			t.Errorf("after reloading processes = %d: %q, want a STATUS %q", n, lines, want)
		}
		eventually(t, 10*time.Second, fmt.Sprintf("%d workers", n), func() bool { return len(s.workers()) == n })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 10 {
		if _, err := get(ctx, s.addr); err != nil {
			t.Fatalf("GET after shrinking: %v", err)
		}
	}
}

// TestListenErrors: a port in use or an address that cannot be bound makes
// the master exit non-zero with a message naming them, before any worker.
func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name string
		opts serverOpts
		want []string
	}{
		{"port in use", serverOpts{port: busyPort}, []string{strconv.Itoa(busyPort), "already in use"}},
		// 192.0.2.1 (TEST-NET-1) is on no interface: bind fails, and
		// nothing is sent anywhere.
		{"address not local", serverOpts{args: []string{"--address", "192.0.2.1"}}, []string{"192.0.2.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.noNotify = true
			s := launch(t, tt.opts)
			if code := s.wait(10 * time.Second); code == 0 {
				t.Errorf("exit code 0, want non-zero")
			}
			out := s.logText()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "worker started") {
				t.Errorf("a worker was started:\n%s", out)
			}
			if left := procsOf(s.bin); len(left) > 0 {
				t.Errorf("processes left behind: %v", left)
			}
		})
	}
}

// TestSdNotify checks the sd_notify protocol on a NOTIFY_SOCKET made here.
func TestSdNotify(t *testing.T) {
	s := launch(t, serverOpts{processes: 2})
	lines := s.waitNotify("READY=1", 20*time.Second)
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "STATUS=") && strings.Contains(l, "2 workers") }) {
		t.Errorf("READY=1 datagram %q has no STATUS naming 2 workers", lines)
	}
	// READY=1 follows the last worker's report that it serves.
	ready := 0
	for _, l := range s.logLines() {
		if l["msg"] == "worker ready" {
			ready++
		}
	}
	if ready != 2 {
		t.Errorf("READY=1 sent after %d workers reported ready, want 2", ready)
	}
	for _, pid := range s.workers() {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(env), "NOTIFY_SOCKET=") {
			t.Errorf("worker %d inherited NOTIFY_SOCKET", pid)
		}
	}

	before := time.Duration(mustMonotonic(t)) * time.Microsecond
	s.signal(syscall.SIGHUP)
	lines = s.waitNotify("RELOADING=1", 10*time.Second)
	var usec int64 = -1
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "MONOTONIC_USEC="); ok {
			usec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if at := time.Duration(usec) * time.Microsecond; at < before || at > before+time.Minute {
		t.Errorf("RELOADING=1 datagram %q: MONOTONIC_USEC is not the time of the reload (around %d)", lines, before/time.Microsecond)
	}
	s.waitNotify("READY=1", 20*time.Second)

	s.signal(syscall.SIGTERM)
	s.waitNotify("STOPPING=1", 10*time.Second)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
}

func mustMonotonic(t *testing.T) int64 {
	t.Helper()
	v, err := strconv.ParseInt(monotonicUsec(), 10, 64)
	if err != nil || v == 0 {
		t.Fatalf("monotonic clock: %q %v", monotonicUsec(), err)
	}
	return v
}

// TestPID1 runs the master as PID 1 of a new PID namespace, as a container
// entrypoint: it reaps an orphan it never started and stops cleanly on
// SIGTERM.
func TestPID1(t *testing.T) {
	needBinary(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare(1) not installed: cannot make a PID namespace")
	}
	if out, err := exec.Command("unshare", "--pid", "--fork", "true").CombinedOutput(); err != nil {
		t.Skipf("this machine does not allow a new PID namespace (unshare --pid --fork: %v %s)", err, out)
	}
	// sh, as PID 1, leaves an orphaned sleep behind and becomes wsd: the
	// master inherits a child it knows nothing about.
	s := launch(t, serverOpts{processes: 2, wrap: []string{"unshare", "--pid", "--fork",
		"sh", "-c", `(sleep 3 &); exec "$0" "$@"`}})
	var master int
	eventually(t, 10*time.Second, "unshare to fork", func() bool {
		c := children(s.pid())
		if len(c) == 1 {
			master = c[0]
		}
		return master != 0
	})
	s.waitNotify("READY=1", 20*time.Second)
	var orphan int
	for _, pid := range children(master) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); !strings.HasPrefix(exe, s.bin) {
			orphan = pid
		}
	}
	if orphan == 0 {
		t.Fatalf("the orphaned sleep is not a child of the master; children %v", children(master))
	}
	eventually(t, 10*time.Second, fmt.Sprintf("the orphan %d to exit and be reaped", orphan), func() bool {
		return procState(orphan) == ""
	})
	syscall.Kill(master, syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Errorf("PID 1 exit code %d, want 0", code)
	}
	if left := procsOf(s.bin); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

// TestBinaryUpgrade replaces the binary on disk and sends SIGUSR2: the
// master keeps its pid and its port, runs the new binary, its workers are
// replaced, and not one handshake fails meanwhile.
func TestBinaryUpgrade(t *testing.T) {
	needBinary(t)
	bin := filepath.Join(t.TempDir(), "wsd")
	copyFile(t, wsdBin, bin)
	s := startServer(t, serverOpts{processes: 2, bin: bin})
	old := s.workers()
	oldConns := allConns(dialSpread(t, s.addr, old, 2))
	closes := readCloses(oldConns)

	// Install a new binary the way package managers do: a new file renamed
	// over the old one. The running master's image is now "(deleted)".
	copyFile(t, wsdBin, bin+".new")
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	exe := fmt.Sprintf("/proc/%d/exe", s.pid())
	if link, _ := os.Readlink(exe); !strings.HasSuffix(link, " (deleted)") {
		t.Fatalf("%s -> %q, want the replaced binary marked (deleted)", exe, link)
	}

	load := startLoad(func(ctx context.Context) (int, error) {
		c, err := dialWS(ctx, s.addr)
		if err != nil {
			return 0, err
		}
		c.CloseNow()
		return c.worker, nil
	})
	time.Sleep(100 * time.Millisecond)
	s.signal(syscall.SIGUSR2)
	s.waitNotify("RELOADING=1", 10*time.Second)
	s.waitNotify("READY=1", 20*time.Second)
	time.Sleep(200 * time.Millisecond)
	ok, failures, _ := load.finish()
	if len(failures) > 0 {
		t.Errorf("%d of %d handshakes during the upgrade failed: %v", len(failures), ok+len(failures), failures)
	}

	if link, _ := os.Readlink(exe); link != bin {
		t.Errorf("after the upgrade the master runs %q, want the new %s", link, bin)
	}
	if gone(s.pid()) {
		t.Fatalf("the master's pid %d is gone", s.pid())
	}
	if got := collectCloses(t, closes, len(oldConns), 15*time.Second); got[websocket.StatusServiceRestart] != len(oldConns) {
		t.Errorf("old connections closed with %v, want all %d with 1012", got, len(oldConns))
	}
	for _, pid := range old {
		eventually(t, 10*time.Second, fmt.Sprintf("old worker %d to exit", pid), func() bool { return gone(pid) })
	}
	now := s.workers()
	for _, pid := range now {
		if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); link != bin {
			t.Errorf("worker %d runs %q, want the new %s", pid, link, bin)
		}
	}
	if len(now) != 2 {
		t.Errorf("workers after the upgrade %v, want 2", now)
	}
	// The upgraded master still supervises: kill a worker, get another.
	syscall.Kill(now[0], syscall.SIGKILL)
	eventually(t, 10*time.Second, "a replacement after the upgrade", func() bool {
		w := s.workers()
		return len(w) == 2 && !slices.Contains(w, now[0])
	})
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Errorf("master exit code %d after the upgrade, want 0", code)
	}
	if left := procsOf(bin); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestCrashLoop kills every worker of a slot as soon as it appears: the
// master backs off, then gives up, stops and exits non-zero saying why.
func TestCrashLoop(t *testing.T) {
	s := startServer(t, serverOpts{processes: 1})
	killed := make(map[int]bool)
	deadline := time.Now().Add(20 * time.Second)
	for !gone(s.pid()) {
		if time.Now().After(deadline) {
			t.Fatalf("the master still runs after %d workers were killed", len(killed))
		}
		for _, pid := range s.workers() {
			if !killed[pid] {
				killed[pid] = true
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code := s.wait(10 * time.Second); code == 0 {
		t.Errorf("exit code 0 after a crash loop, want non-zero")
	}
	if out := s.logText(); !strings.Contains(out, "crash loop") {
		t.Errorf("output does not say crash loop:\n%s", out)
	}
	if len(killed) < 5 {
		t.Errorf("gave up after %d failures, want the 5th", len(killed))
	}
	if left := procsOf(s.bin); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

// TestSecondSIGINT: a graceful stop held up by a client stops at once on a
// second SIGINT.
func TestSecondSIGINT(t *testing.T) {
	s := startServer(t, serverOpts{processes: 1, args: []string{"--shutdown-timeout", "30s", "--header-timeout", "30s"}})
	// A request whose header never ends keeps the worker's graceful stop
	// waiting for up to the header timeout.
	conn, err := net.Dial("tcp4", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	s.signal(syscall.SIGINT)
	time.Sleep(500 * time.Millisecond)
	if gone(s.pid()) {
		t.Fatal("the first SIGINT did not wait for the open request; nothing left for a second one to cut short")
	}
	start := time.Now()
	s.signal(syscall.SIGINT)
	code := s.wait(5 * time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the second SIGINT took %s to stop", d)
	}
	if code == 0 {
		t.Errorf("exit code 0 after a forced stop, want non-zero")
	}
	if left := procsOf(s.bin); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

// TestWorkerByHand: `wsd worker` outside a master explains itself.
func TestWorkerByHand(t *testing.T) {
	needBinary(t)
	out, err := exec.Command(wsdBin, WorkerCommand).CombinedOutput()
	if err == nil {
		t.Fatalf("wsd worker by hand succeeded: %s", out)
	}
	if !strings.Contains(string(out), "runs only under `wsd serve`") {
		t.Errorf("wsd worker by hand: %s", out)
	}
}

// TestFailedReloads: a reload whose configuration does not validate, and an
// upgrade to a binary that cannot start a worker, both leave the old workers
// serving and say so in the status systemd shows.
func TestFailedReloads(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "wsd")
	copyFile(t, wsdBin, bin)
	file := filepath.Join(dir, "wsd.toml")
	if err := os.WriteFile(file, []byte("max_msg_size = 1024\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, serverOpts{processes: 2, bin: bin, args: []string{"--config", file}})
	old := s.workers()

	tests := []struct {
		name   string
		spoil  func()
		sig    syscall.Signal
		status string
	}{
		{"invalid configuration", func() {
			if err := os.WriteFile(file, []byte("max_msg_size = -5\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, syscall.SIGHUP, "reload failed"},
		{"binary that cannot start", func() {
			if err := os.WriteFile(file, []byte("max_msg_size = 1024\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Remove(bin)
			if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, syscall.SIGUSR2, "binary upgrade failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spoil()
			s.signal(tt.sig)
			s.waitNotify("RELOADING=1", 10*time.Second)
			lines := s.waitNotify("READY=1", 20*time.Second)
			if !strings.Contains(strings.Join(lines, "\n"), tt.status) {
				t.Errorf("READY=1 datagram %q, want a STATUS saying %q", lines, tt.status)
			}
			if now := s.workers(); !slices.Equal(now, old) {
				t.Errorf("workers %v after a failed reload, want the old %v", now, old)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for range 10 {
				if _, err := get(ctx, s.addr); err != nil {
					t.Fatalf("GET after a failed reload: %v", err)
				}
			}
		})
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
}

// TestMasterKilled: workers whose master is killed see their lifeline end,
// stop gracefully (their clients get 1001) and exit; none is orphaned.
func TestMasterKilled(t *testing.T) {
	s := startServer(t, serverOpts{processes: 2})
	pids := s.workers()
	conns := allConns(dialSpread(t, s.addr, pids, 1))
	closes := readCloses(conns)
	s.signal(syscall.SIGKILL)
	s.wait(5 * time.Second)
	if got := collectCloses(t, closes, len(conns), 15*time.Second); got[websocket.StatusGoingAway] != len(conns) {
		t.Errorf("close codes %v, want all %d to be 1001", got, len(conns))
	}
	eventually(t, 15*time.Second, "the orphaned workers to exit", func() bool { return len(procsOf(s.bin)) == 0 })
	if !strings.Contains(s.logText(), "master gone") {
		t.Errorf("no worker logged that its master is gone:\n%s", s.logText())
	}
}
