package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"
)

// logAccess wraps next to write one log line per request (--access-log):
// method, path (without the query, which may carry secrets), status,
// response body bytes, the time the handler took, and the client's address.
// The line is written when the handler returns, before fasthttp sends the
// response, so the duration leaves out the sending; for a WebSocket it
// covers the handshake (status 101), not the connection's life.
//
// The wrapper is installed only when the access log is on, so that it
// costs nothing otherwise.
func (w *Worker) logAccess(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	log := w.log
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		next(ctx)
		if !log.Enabled(context.Background(), slog.LevelInfo) {
			return
		}
		log.LogAttrs(context.Background(), slog.LevelInfo, "access",
			slog.String("method", string(ctx.Method())),
			slog.String("path", string(ctx.Path())),
			slog.Int("status", ctx.Response.StatusCode()),
			slog.Int64("bytes", responseBytes(&ctx.Response)),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", ctx.RemoteIP().String()),
		)
	}
}

// responseBytes is the size of the response body without reading a streamed
// one (a static file), whose Content-Length tells it; -1 when unknown.
func responseBytes(r *fasthttp.Response) int64 {
	if r.IsBodyStream() {
		if n := r.Header.ContentLength(); n >= 0 {
			return int64(n)
		}
		return -1
	}
	return int64(len(r.Body()))
}
