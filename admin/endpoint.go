package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Endpoint serves one worker's metrics, over HTTP, on the connections handed
// to it, for the master to gather. It listens on nothing itself: wsd's
// master sends each worker one end of a fresh socketpair per scrape, which
// involves no file or address.
type Endpoint struct {
	srv  *http.Server
	ln   *connListener
	done chan struct{}
}

// NewEndpoint returns an Endpoint that serves g's metrics and
// wsd_build_info (on any request path; GET /metrics by convention) until
// Close.
func NewEndpoint(g prometheus.Gatherer) *Endpoint {
	all := prometheus.Gatherers{buildInfo(), g}
	e := &Endpoint{
		srv: &http.Server{
			Handler:           promhttp.HandlerFor(all, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
			ReadHeaderTimeout: 5 * time.Second,
			// A scrape's connection is used once; one the master forgot
			// must not stay open for good.
			IdleTimeout: 30 * time.Second,
		},
		ln:   newConnListener(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(e.done)
		e.srv.Serve(e.ln)
	}()
	return e
}

// ServeConn serves requests on conn until the other side closes it, then
// closes it. It returns at once. After Close it closes conn and returns
// net.ErrClosed.
func (e *Endpoint) ServeConn(conn net.Conn) error {
	return e.ln.hand(conn)
}

// Close stops serving and waits for the scrapes in progress (up to a
// second).
func (e *Endpoint) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	<-e.done
	if errors.Is(err, context.DeadlineExceeded) {
		err = e.srv.Close()
	}
	return err
}

// connListener is a net.Listener whose connections are handed to it rather
// than accepted from the kernel.
type connListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// hand queues conn for Accept, or closes it once the listener is closed.
func (l *connListener) hand(conn net.Conn) error {
	select {
	case l.conns <- conn:
		return nil
	case <-l.closed:
		conn.Close()
		return net.ErrClosed
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return handedAddr{} }

// handedAddr is the address of a connListener, which has none.
type handedAddr struct{}

func (handedAddr) Network() string { return "handed" }
func (handedAddr) String() string  { return "handed" }
