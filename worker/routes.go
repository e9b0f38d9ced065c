package worker

import (
	"bytes"
	"log/slog"
	"runtime/debug"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/wsext"
)

var helloWorld = []byte("Hello World!")

func (w *Worker) serveHTTP(ctx *fasthttp.RequestCtx) {
	// fasthttp does not recover a handler's panic: one bad request would
	// end the worker and every WebSocket on it.
	defer w.recoverRequest(ctx)
	// Set last: ctx.Error, used by several routes, resets the headers.
	defer ctx.Response.Header.Set("Wsd-Worker", w.pid)
	path := ctx.Path()
	switch {
	case string(path) == "/" && websocket.FastHTTPIsWebSocketUpgrade(ctx):
		w.upgrade(ctx, wsext.Settings{OnMessage: echo, OnShutdown: w.logShutdown, OnClose: w.logClose})
	case string(path) == "/broadcast":
		w.upgrade(ctx, wsext.Settings{OnMessage: w.broadcast, OnShutdown: w.logShutdown, OnClose: w.logClose, UData: broadcastMember})
	case bytes.HasPrefix(path, pubsubPrefix):
		w.servePubSub(ctx)
	case bytes.HasPrefix(path, publishPrefix):
		w.servePublish(ctx)
	case bytes.HasPrefix(path, ssePrefix):
		w.serveSSE(ctx)
	case bytes.HasPrefix(path, presencePrefix):
		w.servePresence(ctx)
	case w.public != nil:
		w.serveStatic(ctx)
	case string(path) == "/":
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Error("405 Method Not Allowed\n", fasthttp.StatusMethodNotAllowed)
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			return
		}
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBody(helloWorld)
	default:
		ctx.Error("404 Not Found\n", fasthttp.StatusNotFound)
	}
}

// upgrade adds the worker's headers to the 101 and upgrades.
func (w *Worker) upgrade(ctx *fasthttp.RequestCtx, s wsext.Settings) {
	ctx.Response.Header.SetCanonical([]byte("Wsd-Connections"), fasthttp.AppendUint(nil, w.ws.Count()))
	if err := w.ws.Upgrade(ctx, w.limit.track(ctx, s)); err != nil {
		w.rlog.Log(slog.LevelDebug, "upgrade refused", "upgrade refused",
			"path", string(ctx.Path()), "remote", ctx.RemoteAddr().String(), "err", err)
		ctx.Response.Header.Set("Wsd-Worker", w.pid)
	}
}

// echo is the spec's Quick Example: every message goes back as it came.
func echo(ws *wsext.Conn, data []byte, isText bool) {
	ws.Write(data, isText)
}

// broadcast sends a message to every other /broadcast connection. The
// message is encoded once; Each runs after OnMessage returns, so the
// prepared message owns a copy of data.
func (w *Worker) broadcast(ws *wsext.Conn, data []byte, isText bool) {
	pm := wsext.NewPreparedMessage(data, isText)
	w.ws.Each(ws, writePrepared, pm, releasePrepared)
}

// broadcastMember is the user data of /broadcast connections: Each visits
// every connection of the worker, echo ones included, and only these may
// receive a broadcast.
var broadcastMember = new(byte)

func writePrepared(ws *wsext.Conn, arg any) {
	if ws.UData() == broadcastMember {
		ws.WritePrepared(arg.(*wsext.PreparedMessage))
	}
}

func releasePrepared(_ *wsext.Conn, arg any) { arg.(*wsext.PreparedMessage).Release() }

// logShutdown and logClose trace every connection at debug level: the
// level an operator turns on to follow connections one by one (the master's
// tests check OnShutdown before OnClose for each). Nothing is logged per
// connection at the default level.
func (w *Worker) logShutdown(ws *wsext.Conn) {
	w.log.Debug("websocket shutdown", "conn", ws.UUID())
}

func (w *Worker) logClose(ws *wsext.Conn) {
	w.log.Debug("websocket closed", "conn", ws.UUID())
}

func (w *Worker) recoverRequest(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		// One line a second: a request that makes the handler panic may
		// come again and again.
		w.rlog.Error("panic", "panic serving a request", "method", string(ctx.Method()), "path", string(ctx.Path()),
			"remote", ctx.RemoteAddr().String(), "panic", r, "stack", string(debug.Stack()))
		ctx.Error("500 Internal Server Error\n", fasthttp.StatusInternalServerError)
		ctx.Response.Header.Set("Wsd-Worker", w.pid)
	}
}
