package worker

import "github.com/valyala/fasthttp"

var (
	pubsubPrefix  = []byte("/pubsub/")
	publishPrefix = []byte("/publish/")
)

// servePubSub will upgrade /pubsub/{channel}; pub/sub is not served yet.
func (w *Worker) servePubSub(ctx *fasthttp.RequestCtx) {
	ctx.Error("404 Not Found\n", fasthttp.StatusNotFound)
}

// servePublish will take POST /publish/{channel}; pub/sub is not served yet.
func (w *Worker) servePublish(ctx *fasthttp.RequestCtx) {
	ctx.Error("404 Not Found\n", fasthttp.StatusNotFound)
}
