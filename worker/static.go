package worker

import "github.com/valyala/fasthttp"

// serveStatic will serve --public; static files are not served yet.
func (w *Worker) serveStatic(ctx *fasthttp.RequestCtx) {
	ctx.Error("404 Not Found\n", fasthttp.StatusNotFound)
}
