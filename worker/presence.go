package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/wsext"
)

// presencePrefix starts GET /presence/{channel}: who subscribes to the
// channel, across every worker (and host, with --redis), with --presence:
//
//	{"channel":"room","count":2,"members":[{"client":"9f2c41d07ab3e5c6-17","user":"alice"},…]}
//
// It is for back-ends, behind --publish-token like POST /publish; with
// --jwt-secret or --jwt-public-key a subscriber token that may subscribe to
// the channel is enough too, so that a page can show who is there. With
// neither set, anyone may ask, as anyone may subscribe.
var presencePrefix = []byte("/presence/")

// presenceAnswer is the body of GET /presence/{channel}.
type presenceAnswer struct {
	Channel string         `json:"channel"`
	Count   int            `json:"count"`
	Members []wsext.Member `json:"members"`
}

// servePresence takes GET /presence/{channel}.
func (w *Worker) servePresence(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("405 Method Not Allowed: ask with GET\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		return
	}
	channel, ok := channelOf(ctx, presencePrefix)
	if !ok {
		return
	}
	if !w.cfg.Presence {
		ctx.Error("404 Not Found: presence is off (start wsd with --presence)\n", fasthttp.StatusNotFound)
		return
	}
	if !w.presenceAllowed(ctx, channel) {
		return
	}
	members, err := w.ws.Presence(channel)
	if err != nil {
		w.rlog.Warn("presence", "pub/sub: GET /presence failed", "channel", channel, "err", err)
		ctx.Error("503 Service Unavailable: "+err.Error()+"\n", fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", "1")
		return
	}
	if members == nil {
		members = []wsext.Member{}
	}
	body, _ := json.Marshal(presenceAnswer{Channel: channel, Count: len(members), Members: members})
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(append(body, '\n'))
}

// presenceQuery reads ?presence=, which asks for the channel's join and
// leave events; a value other than 1, true, 0, false or none is answered
// 400 here.
func presenceQuery(ctx *fasthttp.RequestCtx) (events, ok bool) {
	switch string(ctx.QueryArgs().Peek("presence")) {
	case "", "0", "false":
		return false, true
	case "1", "true":
		return true, true
	}
	ctx.Error("400 Bad Request: presence must be 1 or 0\n", fasthttp.StatusBadRequest)
	return false, false
}

// maxUserLen bounds the ?user= name a subscriber may give itself.
const maxUserLen = 64

// presenceUser is the user a subscriber is listed as: its token's subject,
// or, without authentication, the name it gives itself with ?user= (which
// nothing vouches for, as nothing vouches for anyone without tokens). A
// bad name is answered 400 here.
func (w *Worker) presenceUser(ctx *fasthttp.RequestCtx, g *grant) (string, bool) {
	if w.auth != nil {
		return g.subject(), true
	}
	name := ctx.QueryArgs().Peek("user")
	if len(name) > maxUserLen || !utf8.Valid(name) || bytes.ContainsFunc(name, unicode.IsControl) {
		ctx.Error(fmt.Sprintf("400 Bad Request: user must be at most %d bytes of printable UTF-8\n", maxUserLen), fasthttp.StatusBadRequest)
		return "", false
	}
	return string(name), true
}

// presenceAllowed lets through the publish token, or a subscriber token
// for the channel; with neither configured, everyone. It answers 401 or
// 403 itself.
func (w *Worker) presenceAllowed(ctx *fasthttp.RequestCtx, channel string) bool {
	token := w.cfg.PublishToken
	if token == "" && w.auth == nil {
		return true
	}
	if token != "" && checkBearer(ctx.Request.Header.Peek("Authorization"), token) == nil {
		return true
	}
	if w.auth != nil {
		_, ok := w.authorize(ctx, channel) // answers 401 or 403 itself
		return ok
	}
	refuseBearer(ctx, "presence needs the publish token")
	return false
}
