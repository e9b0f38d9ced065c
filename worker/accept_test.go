package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wsd-server/wsd/internal/ratelog"
	"golang.org/x/sys/unix"
)

func acceptErr(errno unix.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyAccept(t *testing.T) {
	tests := []struct {
		err    error
		reason acceptReason
		retry  bool
	}{
		{acceptErr(unix.EMFILE), acceptEMFILE, true},
		{acceptErr(unix.ENFILE), acceptENFILE, true},
		{acceptErr(unix.ENOBUFS), acceptENOBUFS, true},
		{acceptErr(unix.ENOMEM), acceptENOMEM, true},
		{acceptErr(unix.ECONNABORTED), acceptAborted, true},
		{acceptErr(unix.EPROTO), acceptAborted, true},
		{acceptErr(unix.ENETUNREACH), acceptAborted, true},
		{acceptErr(unix.EPERM), acceptOther, true},
		{acceptErr(unix.EINTR), acceptOther, true},
		{&net.OpError{Op: "accept", Err: timeoutErr{}}, acceptOther, true},
		{fmt.Errorf("wrapped: %w", acceptErr(unix.EMFILE)), acceptEMFILE, true},
		{&net.OpError{Op: "accept", Err: net.ErrClosed}, 0, false},
		{acceptErr(unix.EBADF), 0, false},
		{acceptErr(unix.EINVAL), 0, false},
		{io.EOF, 0, false},
		{errors.New("something else"), 0, false},
	}
	for _, tt := range tests {
		reason, retry := classifyAccept(tt.err)
		if retry != tt.retry || (retry && reason != tt.reason) {
			t.Errorf("classifyAccept(%v) = %s, %v; want %s, %v",
				tt.err, acceptReasons[reason].label, retry, acceptReasons[tt.reason].label, tt.retry)
		}
	}
}

// scriptedListener returns errs in turn, then a connection, and so on;
// nil in errs stands for a connection.
type scriptedListener struct {
	mu     sync.Mutex
	errs   []error
	closed bool
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.errs) == 0 {
		return nil, &net.OpError{Op: "accept", Err: net.ErrClosed}
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	if err != nil {
		return nil, err
	}
	c, _ := net.Pipe()
	return c, nil
}

func (l *scriptedListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func repeatErr(err error, n int) []error {
	s := make([]error, n)
	for i := range s {
		s[i] = err
	}
	return s
}

// TestAcceptSurvives runs Accept over scripted failures: the ones that may
// pass never come out, each is counted under its reason, the backoff
// doubles from 5 ms to 1 s and starts again after a success, and the log
// gets one line per reason however many failures there were.
func TestAcceptSurvives(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	g := newAcceptGuard(ratelog.New(log, time.Hour))
	g.noSpare = true
	var waits []time.Duration
	g.wait = func(d time.Duration, _ <-chan struct{}) { waits = append(waits, d) }

	script := repeatErr(acceptErr(unix.EMFILE), 10)
	script = append(script, nil)
	script = append(script, repeatErr(acceptErr(unix.ENOBUFS), 3)...)
	script = append(script, acceptErr(unix.ECONNABORTED), nil, acceptErr(unix.EBADF))
	ln := g.listen(&scriptedListener{errs: script})

	for i := range 2 {
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("Accept %d: %v, want a connection", i, err)
		}
		c.Close()
	}
	if _, err := ln.Accept(); !errors.Is(err, unix.EBADF) {
		t.Errorf("Accept after EBADF: %v, want EBADF: a broken listener ends Serve", err)
	}

	ms := time.Millisecond
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second,
		5 * ms, 10 * ms, 20 * ms, 40 * ms}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("backoffs %v, want %v", waits, want)
	}
	got := g.Errors()
	for label, n := range map[string]uint64{"emfile": 10, "enobufs": 3, "aborted": 1, "enfile": 0, "enomem": 0, "other": 0} {
		if got[label] != n {
			t.Errorf("accept errors %s = %d, want %d", label, got[label], n)
		}
	}
	msgs := map[string]int{}
	for _, l := range logs.lines(t) {
		msgs[l["msg"].(string)]++
	}
	if len(msgs) != 3 {
		t.Errorf("log lines by message %v: want one for each of the 3 reasons", msgs)
	}
	for msg, n := range msgs {
		if n != 1 {
			t.Errorf("%d lines %q, want 1", n, msg)
		}
	}
}

// TestAcceptCloseEndsBackoff checks that closing the listener ends a
// backoff under way: Shutdown does not wait for it.
func TestAcceptCloseEndsBackoff(t *testing.T) {
	g := newAcceptGuard(ratelog.New(quiet, 0))
	g.noSpare = true
	ln := g.listen(&scriptedListener{errs: repeatErr(acceptErr(unix.EMFILE), 1000)})
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestMaxConnsFor(t *testing.T) {
	tests := []struct {
		set     int
		nofile  uint64
		want    int
		clamped bool
	}{
		{0, 1 << 20, 1<<20 - 1<<16, false},
		{0, 65536, 65536 - 4096, false},
		{0, 1024, 1024 - 128, false},
		{0, 256, 128, false},
		{0, 100, 50, false},
		{0, 1, 1, false},
		{0, unix.RLIM_INFINITY, 1<<31 - 1 - (1<<31-1)/16, false},
		{500, 1024, 500, false},
		{896, 1024, 896, false},
		{897, 1024, 896, true},
		{262144, 1024, 896, true},
	}
	for _, tt := range tests {
		n, clamped := maxConnsFor(tt.set, tt.nofile)
		if n != tt.want || clamped != tt.clamped {
			t.Errorf("maxConnsFor(%d, %d) = %d, %v; want %d, %v", tt.set, tt.nofile, n, clamped, tt.want, tt.clamped)
		}
	}
}

func TestMaxConnsFollowsLimit(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	if rl.Cur != rl.Max {
		t.Errorf("open-file limit %d, hard %d: Go raises the soft limit at start", rl.Cur, rl.Max)
	}
	want, _ := maxConnsFor(0, rl.Cur)
	w, err := New(testConfig(), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if w.limit.max != want || w.http.Concurrency != want {
		t.Errorf("max-conns 0 gave %d connections (fasthttp %d), want %d from the open-file limit %d",
			w.limit.max, w.http.Concurrency, want, rl.Cur)
	}
}

// The descriptor-limit test runs a worker in a child process (this test
// binary again) whose open-file limit is 256, so that the limit touches no
// other test.
const fdChildEnv = "WSD_TEST_DESCRIPTOR_CHILD"

const (
	childNofile   = 256
	childFree     = 40  // descriptors left free once the child is set up
	childMaxConns = 1e5 // explicit, to be clamped
)

// TestDescriptorLimit floods a worker that has 40 descriptors to spare
// with 300 connections at a time, three times. The worker must go on
// serving: every flooding connection is answered or closed (none is left
// hanging), a good client echoes after each round, the failed accepts are
// counted, and the log stays short.
func TestDescriptorLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a child process; skipped with -short")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorLimitChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fdChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// next returns what the child says after prefix; the test framework's
	// own lines are skipped.
	next := func(prefix string) string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child ended before saying %s; its log:\n%s", prefix, logs.String())
				}
				if v, ok := strings.CutPrefix(l, prefix+" "); ok {
					return v
				}
				t.Logf("child: %s", l)
			case <-timeout:
				t.Fatalf("child did not say %s; its log:\n%s", prefix, logs.String())
			}
		}
	}
	addr := next("ADDR")
	if got := next("MAXCONNS"); got != "128" {
		t.Errorf("max-conns %s under an open-file limit of %d, want 128", got, childNofile)
	}
	start := time.Now()

	for round := range 3 {
		served, refused, closed, hung := floodRound(t, addr, 300)
		t.Logf("round %d: %d served, %d refused (503), %d closed unserved, %d left hanging", round, served, refused, closed, hung)
		if hung > 0 {
			t.Errorf("round %d: %d connections were neither answered nor closed", round, hung)
		}
		goodEcho(t, addr)
	}

	io.WriteString(stdin, "STOP\n")
	acceptErrors, _ := strconv.Atoi(next("ACCEPT_ERRORS"))
	shed, _ := strconv.Atoi(next("SHED"))
	elapsed := time.Since(start)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("child: %v", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Error("the child did not stop")
	}
	t.Logf("accept errors %d, connections shed %d, in %s", acceptErrors, shed, elapsed.Round(time.Millisecond))
	if acceptErrors == 0 {
		t.Error("wsd_accept_errors_total is 0: the flood did not reach the descriptor limit")
	}
	if shed == 0 {
		t.Error("wsd_connections_shed_total is 0: no waiting connection was closed at the limit")
	}

	// One line a second per kind at most, with a second of margin for
	// each end; and the clamping of max-conns was said, with both numbers.
	perMsg := map[string]int{}
	for _, l := range logs.lines(t) {
		perMsg[l["msg"].(string)]++
	}
	bound := int(elapsed/time.Second) + 2
	for msg, n := range perMsg {
		if n > bound {
			t.Errorf("%d lines %q in %s, want at most %d", n, msg, elapsed.Round(time.Millisecond), bound)
		}
	}
	if perMsg[acceptReasons[acceptEMFILE].msg] == 0 {
		t.Errorf("no line says the worker ran out of descriptors: %v", perMsg)
	}
	clampMsg := fmt.Sprintf("max-conns %d is more than the open-file limit (RLIMIT_NOFILE) %d allows", int(childMaxConns), childNofile)
	if !strings.Contains(logs.String(), clampMsg) {
		t.Errorf("no warning %q in the log:\n%s", clampMsg, logs.String())
	}
}

// floodRound opens n connections to addr, sends a request on each and
// sorts them by what became of them within a generous deadline.
func floodRound(t *testing.T, addr string, n int) (served, refused, closed, hung int) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			closed++ // the backlog was full: refused by the kernel
			continue
		}
		conns = append(conns, c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	type result int
	const (
		resServed result = iota
		resRefused
		resClosed
		resHung
	)
	results := make(chan result, len(conns))
	for _, c := range conns {
		go func() {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			var ne net.Error
			switch {
			case strings.Contains(line, " 200 "):
				results <- resServed
			case strings.Contains(line, " 503 "):
				results <- resRefused
			case errors.As(err, &ne) && ne.Timeout():
				results <- resHung
			default:
				results <- resClosed
			}
		}()
	}
	for range conns {
		switch <-results {
		case resServed:
			served++
		case resRefused:
			refused++
		case resClosed:
			closed++
		case resHung:
			hung++
		}
	}
	return served, refused, closed, hung
}

// goodEcho connects and echoes one message. The flood's connections are
// closing as it starts, so it tries again for a while before failing.
func goodEcho(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if last = echoOnce(addr); last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no good client could echo after the flood: %v", last)
}

func echoOnce(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("still there?")); err != nil {
		return err
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if string(got) != "still there?" {
		return fmt.Errorf("echo %q", got)
	}
	return c.Close(websocket.StatusNormalClosure, "")
}

// TestDescriptorLimitChild is the worker of TestDescriptorLimit, run in a
// process of its own; on its own it does nothing. It says ADDR and
// MAXCONNS on stdout, serves until it reads STOP, then says ACCEPT_ERRORS
// and SHED. It logs JSON to stderr.
func TestDescriptorLimitChild(t *testing.T) {
	if os.Getenv(fdChildEnv) != "1" {
		t.Skip("run by TestDescriptorLimit")
	}
	// Soft and hard: the worker raises the soft limit to the hard one.
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: childNofile, Max: childNofile}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.MaxConns = childMaxConns
	w, err := New(cfg, Options{Logger: log, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Descriptors taken elsewhere (files, Redis, a leak) bring the limit
	// below --max-conns: keep childFree of them free.
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var ballast []int
	for range childNofile - len(fds) - childFree {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		ballast = append(ballast, fd)
	}
	served := make(chan error, 1)
	go func() { served <- w.Serve(ln) }()
	fmt.Printf("ADDR %s\nMAXCONNS %d\n", ln.Addr(), w.limit.max)

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() && sc.Text() != "STOP" {
	}
	select {
	case err := <-served:
		t.Fatalf("Serve ended under the flood: %v", err)
	default:
	}
	fmt.Printf("ACCEPT_ERRORS %d\nSHED %d\n", int(sample(t, reg, "wsd_accept_errors_total", "reason", "emfile")),
		int(sample(t, reg, "wsd_connections_shed_total")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	if err := <-served; err != nil {
		t.Error(err)
	}
	for _, fd := range ballast {
		unix.Close(fd)
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
