package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsd-server/wsd/bench/procstat"
)

// Server describes a server program to benchmark.
type Server struct {
	// Name labels the server in progress lines and tables ("wsd").
	Name string
	// Command is the program and its arguments. "{address}" and "{port}"
	// in any argument are replaced by where the server must listen.
	Command []string
	// Env is added to the environment the server inherits.
	Env []string
	// Log, if not nil, receives the server's output.
	Log io.Writer
}

// CommandLine returns the command as a shell line with PORT for the port.
func (s Server) CommandLine() string {
	args := make([]string, len(s.Command))
	for i, a := range s.Command {
		args[i] = expand(a, "127.0.0.1", "PORT")
	}
	return strings.Join(append(append([]string(nil), s.Env...), args...), " ")
}

func expand(arg, address, port string) string {
	return strings.NewReplacer("{address}", address, "{port}", port).Replace(arg)
}

// ErrExited reports a server that exited before it was stopped.
var ErrExited = errors.New("suite: server exited")

// Process is a running server.
type Process struct {
	// Server is what was started.
	Server Server
	// Addr is the host:port it listens on.
	Addr string

	cmd     *exec.Cmd
	out     *tail
	exited  chan struct{}
	waitErr error
	stopped bool
}

// Start starts s on a free 127.0.0.1 port and waits until GET / answers
// 200, at most 30 s. The server runs in a process group of its own, so that
// Stop also reaches any worker processes it forks.
func Start(ctx context.Context, s Server) (*Process, error) {
	if len(s.Command) == 0 {
		return nil, errors.New("suite: server without a command")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := make([]string, len(s.Command))
	for i, a := range s.Command {
		args[i] = expand(a, "127.0.0.1", strconv.Itoa(port))
	}
	p := &Process{Server: s, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: &tail{max: 8 << 10}, exited: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(), s.Env...)
	var w io.Writer = p.out
	if s.Log != nil {
		w = io.MultiWriter(p.out, s.Log)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	// Pdeathsig: a benchmark killed half-way must not leave servers behind.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("suite: start %s: %w", s.Name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// PID returns the server's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output returns the last few KiB the server printed.
func (p *Process) Output() string { return p.out.String() }

// Alive returns ErrExited (with the server's last output) if the server has
// exited, and nil while it runs.
func (p *Process) Alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%w: %s: %v\n%s", ErrExited, p.Server.Name, p.waitErr, p.Output())
	default:
		return nil
	}
}

func (p *Process) waitReady(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if err := p.Alive(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		resp, err := client.Get("http://" + p.Addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET / answered %s", resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("suite: %s not ready on %s after %v: %v\n%s", p.Server.Name, p.Addr, timeout, last, p.Output())
}

// Stop stops the server: SIGTERM, then after 15 s SIGKILL to its whole
// process group. It returns an error if the server had already exited.
func (p *Process) Stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	err := p.Alive()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.exited
	}
	// Workers that outlived their master. While any member is left the
	// group id cannot have been reused, so the group is still ours.
	if left, _ := procstat.Group(p.PID()); len(left) > 0 {
		syscall.Kill(-p.PID(), syscall.SIGKILL)
	}
	return err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("suite: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.b, nil))
}
