package baseline

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Server is the baseline's request handler and its /broadcast registry.
// The zero value is not usable; call New.
type Server struct {
	upgrader websocket.FastHTTPUpgrader

	mu    sync.RWMutex
	peers map[*peer]struct{}
}

// peer is one /broadcast connection; mu serialises its writers, since a
// websocket.Conn supports one concurrent writer only.
type peer struct {
	mu   sync.Mutex
	conn *websocket.Conn
}

// New returns a Server with an empty broadcast registry.
func New() *Server {
	return &Server{peers: make(map[*peer]struct{})}
}

// Handler serves one request.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/":
		if websocket.FastHTTPIsWebSocketUpgrade(ctx) {
			s.upgrader.Upgrade(ctx, echo) // it has written the error response
			return
		}
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
			return
		}
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.WriteString("Hello World!")
	case "/broadcast":
		s.upgrader.Upgrade(ctx, s.broadcast)
	default:
		ctx.Error("Not Found", fasthttp.StatusNotFound)
	}
}

// Broadcasters returns the number of open /broadcast connections.
func (s *Server) Broadcasters() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.peers)
}

func echo(c *websocket.Conn) {
	defer c.Close()
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, msg); err != nil {
			return
		}
	}
}

func (s *Server) broadcast(c *websocket.Conn) {
	me := &peer{conn: c}
	s.mu.Lock()
	s.peers[me] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.peers, me)
		s.mu.Unlock()
		c.Close()
	}()
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		s.mu.RLock()
		for p := range s.peers {
			if p == me {
				continue
			}
			p.mu.Lock()
			p.conn.WriteMessage(mt, msg) // a failed peer is removed by its own reader
			p.mu.Unlock()
		}
		s.mu.RUnlock()
	}
}

// Serve serves HTTP and WebSocket on ln until ctx is cancelled, then closes
// the listener and every /broadcast connection and returns nil. Echo
// connections end with the process, as in a typical program.
func Serve(ctx context.Context, ln net.Listener) error {
	s := New()
	srv := &fasthttp.Server{Handler: s.Handler}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	ln.Close()
	s.mu.RLock()
	for p := range s.peers {
		p.conn.NetConn().Close()
	}
	s.mu.RUnlock()
	if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
