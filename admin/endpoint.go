package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// SocketPath is where the worker with pid serves its metrics in the
// daemon's runtime directory dir.
func SocketPath(dir string, pid int) string {
	return filepath.Join(dir, "worker-"+strconv.Itoa(pid)+".sock")
}

// Endpoint serves one worker's metrics on a unix socket for the master to
// gather.
type Endpoint struct {
	srv  *http.Server
	ln   net.Listener
	path string
	done chan struct{}
}

// ServeEndpoint listens on a unix socket at path and serves g's metrics on
// it (any request path; GET /metrics by convention) until Close. A file left
// at path by a process that no longer exists (the pid was reused) is
// replaced.
func ServeEndpoint(path string, g prometheus.Gatherer) (*Endpoint, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: metrics socket: %w", err)
	}
	e := &Endpoint{
		srv: &http.Server{
			Handler:           promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
			ReadHeaderTimeout: 5 * time.Second,
		},
		ln:   ln,
		path: path,
		done: make(chan struct{}),
	}
	go func() {
		defer close(e.done)
		e.srv.Serve(ln)
	}()
	return e, nil
}

// Path returns the socket's path.
func (e *Endpoint) Path() string { return e.path }

// Close stops serving, waits for the scrapes in progress (up to a second)
// and removes the socket file.
func (e *Endpoint) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	<-e.done
	if errors.Is(err, context.DeadlineExceeded) {
		err = e.srv.Close()
	}
	// net.UnixListener removes the file on Close; this covers a listener
	// whose unlink-on-close was turned off.
	if rmErr := os.Remove(e.path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	return err
}
