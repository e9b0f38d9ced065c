package master

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
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

// wsdReload runs `wsd reload` with args and returns its exit code, stdout
// and stderr.
func wsdReload(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wsdBin, append([]string{"reload", "--timeout", "40s"}, args...)...)
	cmd.Env = envWithout(os.Environ(), "WSD_")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("wsd reload: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// getStatus reads GET /status from the admin address.
func getStatus(t *testing.T, admin string) Status {
	t.Helper()
	code, body := adminGet(t, admin, "/status")
	if code != http.StatusOK {
		t.Fatalf("GET /status: %d %s", code, body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /status: %v: %s", err, body)
	}
	return st
}

// echoSize sends a text message of n bytes on a new WebSocket and reports
// whether it came back: false when the worker closed the connection for a
// message over its max_msg_size.
func echoSize(t *testing.T, addr string, n int) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialWS(ctx, addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	err = c.echo(ctx, strings.Repeat("x", n))
	if err != nil && websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("echo of %d bytes: %v", n, err)
	}
	return err == nil
}

// TestReloadCommand drives `wsd reload` against a daemon with a pid file
// and an admin address: a good configuration is in effect when it exits 0;
// a broken one makes it exit 2 naming the setting, and the daemon keeps
// serving the configuration it had.
func TestReloadCommand(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "wsd.toml")
	pidFile := filepath.Join(dir, "wsd.pid")
	if err := os.WriteFile(file, []byte("max_msg_size = 1024\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	s := startServer(t, serverOpts{processes: 2, args: []string{"--config", file, "--admin-address", admin, "--pid-file", pidFile}})
	if echoSize(t, s.addr, 1500) {
		t.Fatal("a 1500-byte message passed max_msg_size = 1024")
	}

	tests := []struct {
		name     string
		file     string
		args     []string
		code     int
		stdout   string // a substring of what it prints
		stderr   string
		echo1500 bool // whether the daemon takes a 1500-byte message after
		newGen   bool // whether the workers are replaced
	}{
		{"valid", "max_msg_size = 2048\n", []string{"--pid-file", pidFile, "--admin-address", admin},
			0, "reloaded: 2 workers run configuration generation 2", "", true, true},
		{"invalid setting", "max_msg_size = -5\n", []string{"--pid-file", pidFile, "--admin-address", admin},
			2, "", "max-msg-size = -5", true, false},
		{"unparsable file", "max_msg_size = = 1\n", []string{"--admin-address", admin},
			2, "", "invalid configuration", true, false},
		{"valid again, admin address only", "max_msg_size = 1024\n", []string{"--admin-address", admin},
			0, "configuration generation 3", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := getStatus(t, admin)
			if err := os.WriteFile(file, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := wsdReload(t, tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("wsd reload: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			after := getStatus(t, admin)
			if after.PID != s.pid() || after.Reloads != before.Reloads+1 || after.Reload == nil {
				t.Fatalf("status after: %+v (before %+v)", after, before)
			}
			for _, w := range after.Workers {
				if tt.newGen && w.Generation != after.Reload.Generation || !tt.newGen && w.Generation != before.Generation {
					t.Errorf("worker %+v after the reload %+v", w, after.Reload)
				}
			}
			if got := echoSize(t, s.addr, 1500); got != tt.echo1500 {
				t.Errorf("a 1500-byte message echoed: %v, want %v", got, tt.echo1500)
			}
		})
	}
}

// TestPidFile: the master writes its pid at start, keeps the file across a
// binary upgrade (same pid), and removes it when it stops cleanly; `wsd
// reload` with only the pid file signals it and says it cannot tell more.
func TestPidFile(t *testing.T) {
	needBinary(t)
	pidFile := filepath.Join(t.TempDir(), "wsd.pid")
	s := startServer(t, serverOpts{processes: 1, args: []string{"--pid-file", pidFile}})
	readPid := func() int {
		t.Helper()
		pid, err := ReadPidFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	if pid := readPid(); pid != s.pid() {
		t.Fatalf("pid file holds %d, want the master's %d", pid, s.pid())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(pidFile), ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left beside the pid file: %v", leftovers)
	}

	old := s.workers()
	code, stdout, stderr := wsdReload(t, "--pid-file", pidFile)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("sent SIGHUP to the wsd master (pid %d)", s.pid())) {
		t.Errorf("wsd reload --pid-file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	s.waitNotify("READY=1", 20*time.Second)
	eventually(t, 10*time.Second, "the old worker to go", func() bool { return gone(old[0]) })

	s.signal(syscall.SIGUSR2)
	s.waitNotify("READY=1", 20*time.Second) // the new image's
	if pid := readPid(); pid != s.pid() {
		t.Errorf("pid file after a binary upgrade holds %d, want %d", pid, s.pid())
	}

	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after a clean stop: %v, want it removed", err)
	}
	code, _, stderr = wsdReload(t, "--pid-file", pidFile)
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("wsd reload with no daemon: exit %d, stderr %q", code, stderr)
	}
}

// TestUpgradeWorkerFailure: a new worker that cannot start says why, and
// GET /status reports the reload failed with that reason while the old
// workers keep serving.
func TestUpgradeWorkerFailure(t *testing.T) {
	needBinary(t)
	bin := filepath.Join(t.TempDir(), "wsd")
	copyFile(t, wsdBin, bin)
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	s := startServer(t, serverOpts{processes: 1, bin: bin, args: []string{"--admin-address", admin}})
	old := s.workers()
	// A "binary" whose worker fails the way a real one does: a line on
	// its status pipe (fd 5), then a non-zero exit.
	os.Remove(bin)
	script := "#!/bin/sh\necho 'failed worker: tls-cert: the disk ate it' >&5\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR2)
	// The outcome is what /status says once the upgrade has ended; no
	// notification's order is relied on.
	var st Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		st = getStatus(t, admin)
		if r := st.Reload; r != nil && r.State != ReloadRunning || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := st.Reload; r == nil || r.Kind != "upgrade" || r.State != ReloadFailed || !strings.Contains(r.Message, "tls-cert: the disk ate it") {
		t.Errorf("status after a failed upgrade: %+v", r)
	}
	if len(st.Workers) != 1 || st.Workers[0].PID != old[0] || st.Generation != 1 {
		t.Errorf("workers %+v, generation %d; want the old worker %d, generation 1", st.Workers, st.Generation, old[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := get(ctx, s.addr); err != nil {
		t.Errorf("GET after a failed upgrade: %v", err)
	}
}

// rawWS is a minimal WebSocket client, one goroutine and one descriptor per
// connection, enough to be closed by the server: thousands of them fit
// where a full client's goroutines would not (the race detector allows
// 8128).
type rawWS struct {
	conn   net.Conn
	br     *bufio.Reader
	worker int
}

func dialRaw(addr string) (*rawWS, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	resp.Body.Close()
	worker, _ := strconv.Atoi(resp.Header.Get("Wsd-Worker"))
	if resp.StatusCode != http.StatusSwitchingProtocols || worker == 0 {
		c.Close()
		return nil, fmt.Errorf("handshake: %s, worker %q", resp.Status, resp.Header.Get("Wsd-Worker"))
	}
	c.SetDeadline(time.Time{})
	return &rawWS{conn: c, br: br, worker: worker}, nil
}

// closeCode reads frames until a close frame, and returns its code (0 when
// the connection ended without one). It then closes the connection, which
// ends the server's close handshake.
func (w *rawWS) closeCode() int {
	defer w.conn.Close()
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(w.br, hdr[:]); err != nil {
			return 0
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(w.br, b[:]); err != nil {
				return 0
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(w.br, b[:]); err != nil {
				return 0
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(w.br, payload); err != nil {
			return 0
		}
		if hdr[0]&0x0f == 8 {
			if len(payload) < 2 {
				return 0
			}
			return int(binary.BigEndian.Uint16(payload))
		}
	}
}

// TestDrainReconnects opens a few thousand WebSockets to one worker, whose
// clients reconnect as soon as they are closed, and reloads: the old
// worker closes them with 1012 spread over --drain-period, so the new
// worker sees the reconnects arrive a slice at a time rather than all at
// once, and every client is back at the end.
func TestDrainReconnects(t *testing.T) {
	needBinary(t)
	const (
		n      = 2000
		period = 6 * time.Second
		bucket = 100 * time.Millisecond
	)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 2*n+500 {
		lim.Cur = min(lim.Max, 2*n+1000)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		if lim.Cur < 2*n+500 {
			t.Skipf("open-file limit %d: too low for %d connections", lim.Cur, n)
		}
	}
	s := startServer(t, serverOpts{processes: 1, args: []string{"--drain-period", period.String(), "--shutdown-timeout", "20s"}})
	oldPid := s.workers()[0]

	type reconnect struct {
		at     time.Time
		worker int
	}
	var (
		mu         sync.Mutex
		codes      = make(map[int]int)
		reconnects []reconnect
		failures   []string
		stop       = make(chan struct{})
		conns      sync.WaitGroup
		opened     = make(chan struct{}, n)
	)
	var live sync.Map // *rawWS → true, closed at the end
	// Clients open their first connection 50 at a time, not to overflow
	// the accept backlog.
	sem := make(chan struct{}, 50)
	client := func() {
		defer conns.Done()
		sem <- struct{}{}
		held := true
		release := func() {
			if held {
				<-sem
				held = false
			}
		}
		defer release()
		first := true
		deadline := time.Now().Add(2 * time.Minute)
		for {
			w, err := dialRaw(s.addr)
			if err != nil {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				if time.Now().After(deadline) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			live.Store(w, true)
			if first {
				release()
				opened <- struct{}{}
				first = false
			} else {
				mu.Lock()
				reconnects = append(reconnects, reconnect{time.Now(), w.worker})
				mu.Unlock()
			}
			code := w.closeCode()
			live.Delete(w)
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}
	}
	t.Cleanup(func() {
		close(stop)
		live.Range(func(k, _ any) bool { k.(*rawWS).conn.Close(); return true })
		conns.Wait()
	})
	for range n {
		conns.Add(1)
		go client()
	}
	openTimeout := time.After(90 * time.Second)
	for i := range n {
		select {
		case <-opened:
		case <-openTimeout:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("only %d of %d connections opened; %d failures: %v", i, n, len(failures), failures[:min(len(failures), 5)])
		}
	}
	mu.Lock()
	if len(reconnects) > 0 || len(failures) > 0 {
		t.Fatalf("before the reload: %d reconnects, failures %v", len(reconnects), failures[:min(len(failures), 5)])
	}
	mu.Unlock()

	s.signal(syscall.SIGHUP)
	start := time.Now()
	eventually(t, period+60*time.Second, "every client reconnected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reconnects) >= n
	})
	eventually(t, 30*time.Second, "the old worker to exit", func() bool { return gone(oldPid) })

	mu.Lock()
	defer mu.Unlock()
	if len(reconnects) != n {
		t.Fatalf("%d reconnects, want %d (one per client)", len(reconnects), n)
	}
	if codes[int(websocket.StatusServiceRestart)] != n {
		t.Errorf("close codes %v, want all %d to be 1012", codes, n)
	}
	buckets := make(map[int]int)
	first, last := time.Hour, time.Duration(0)
	for _, r := range reconnects {
		if r.worker == oldPid {
			t.Fatalf("a client reconnected to the old worker %d", oldPid)
		}
		d := r.at.Sub(start)
		first, last = min(first, d), max(last, d)
		buckets[int(d/bucket)]++
	}
	peak := 0
	for _, c := range buckets {
		peak = max(peak, c)
	}
	even := int(int64(n) * int64(bucket) / int64(period))
	t.Logf("%d reconnects from %s to %s after SIGHUP; peak %d per %s (an even spread: %d; all at once: %d)",
		len(reconnects), first.Round(time.Millisecond), last.Round(time.Millisecond), peak, bucket, even, n)
	t.Logf("reconnects per %s: %v", bucket, histogram(buckets))
	// All at once would put them in the first buckets, as fast as the
	// machine reconnects: on a loaded two-core machine with race-enabled
	// binaries, about 300 per 100ms and all within two seconds. Six times
	// the even rate leaves room for the bunching of a stalled process.
	if limit := 6 * even; peak > limit {
		t.Errorf("peak of %d reconnects per %s, want at most %d (even spread %d)", peak, bucket, limit, even)
	}
	// The old worker closes the k-th connection no earlier than
	// period*k/n, and a loaded machine can only delay the reconnects, so
	// the median comes after period/2 unless the closes are not spread.
	slices.SortFunc(reconnects, func(a, b reconnect) int { return a.at.Compare(b.at) })
	if median := reconnects[n/2].at.Sub(start); median < period*2/5 {
		t.Errorf("half the clients reconnected within %s, want no sooner than %s of the %s drain period", median, period*2/5, period)
	}
	if len(failures) > 0 {
		t.Logf("%d reconnect attempts failed and were retried: %v", len(failures), failures[:min(len(failures), 5)])
	}
}

// histogram lists bucket counts in order, for the log.
func histogram(buckets map[int]int) []int {
	keys := make([]int, 0, len(buckets))
	for k := range buckets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		return nil
	}
	out := make([]int, keys[len(keys)-1]+1)
	for k, c := range buckets {
		out[k] = c
	}
	return out
}
