package worker

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/wsext"
)

// The pub/sub endpoints:
//
//	/pubsub/{channel}   WebSocket: subscribes on open; each message from
//	                    the client is published on the channel, to every
//	                    other subscriber (to the sender too with
//	                    --pubsub-echo)
//	POST /publish/{channel}
//	                    the body is published on the channel: 204 on
//	                    success, or 200 with {"offset":N,"epoch":"E"} with
//	                    --history-size; 400 bad channel name; 401 without
//	                    the --publish-token bearer token; 405 not a POST;
//	                    503 when the engine cannot take the message
//	GET /sse/{channel}  Server-Sent Events: the channel's messages, see
//	                    sse.go
//	GET /presence/{channel}
//	                    who subscribes, with --presence: see presence.go
//
// With --jwt-secret or --jwt-public-key, /pubsub and /sse subscribers
// present a token (auth.go); POST /publish keeps --publish-token.
//
// A channel name is 1 to 128 bytes of A-Z a-z 0-9 _ . : - (so it never
// needs escaping in a URL, a log line or a Redis channel).
var (
	pubsubPrefix  = []byte("/pubsub/")
	publishPrefix = []byte("/publish/")
)

// maxChannelLen is the longest channel name the endpoints accept.
const maxChannelLen = 128

var errChannelChars = errors.New("a channel name may only hold the characters A-Z a-z 0-9 _ . : -")

// checkChannel says what is wrong with a channel name, if anything.
func checkChannel(name []byte) error {
	if len(name) == 0 || len(name) > maxChannelLen {
		return fmt.Errorf("a channel name is 1 to %d bytes, not %d", maxChannelLen, len(name))
	}
	for _, c := range name {
		if !channelByte[c] {
			return errChannelChars
		}
	}
	return nil
}

var channelByte = func() (t [256]bool) {
	for c := range t {
		b := byte(c)
		t[c] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			b == '_' || b == '.' || b == ':' || b == '-'
	}
	return t
}()

// channelOf returns the channel named by the path after prefix, or writes a
// 400 and returns false.
func channelOf(ctx *fasthttp.RequestCtx, prefix []byte) (string, bool) {
	name := ctx.Path()[len(prefix):]
	if err := checkChannel(name); err != nil {
		ctx.Error("400 Bad Request: "+err.Error()+"\n", fasthttp.StatusBadRequest)
		return "", false
	}
	return string(name), true
}

// servePubSub upgrades /pubsub/{channel}.
func (w *Worker) servePubSub(ctx *fasthttp.RequestCtx) {
	channel, ok := channelOf(ctx, pubsubPrefix)
	if !ok {
		return
	}
	g, ok := w.authorize(ctx, channel)
	if !ok {
		return
	}
	sub, ok := subscribeOptions(ctx)
	if !ok {
		return
	}
	if w.cfg.Presence {
		user, ok := w.presenceUser(ctx, g)
		if !ok {
			return
		}
		sub.Presence = &wsext.Member{User: user}
	} else {
		sub.PresenceEvents = false
	}
	mayPublish := g.mayPublish(channel)
	exp := new(expiry)
	echo := w.cfg.PubSubEcho
	w.upgrade(ctx, wsext.Settings{
		OnOpen: func(ws *wsext.Conn) {
			subscribe := func() {
				_, err := w.ws.SubscribeWith(ws, channel, sub)
				switch {
				case err == nil, errors.Is(err, wsext.ErrNoHistory), errors.Is(err, wsext.ErrClosed):
				case errors.Is(err, wsext.ErrRecoveryBusy):
					// A reconnection storm: this one comes back later.
					w.rlog.Warn("pubsub recovery busy", "pub/sub: too many subscribers being recovered; one was told to come back", "channel", channel, "conn", ws.UUID())
					ws.CloseWithCode(wsext.CloseTryAgainLater, "busy; reconnect")
				case errors.Is(err, wsext.ErrRecoveryOverflow):
					// SubscribeWith closed it: the client comes back.
					w.rlog.Warn("pubsub recovery overflow", "pub/sub: closed a subscriber whose recovery overflowed", "channel", channel, "conn", ws.UUID())
				default:
					w.rlog.Error("pubsub subscribe", "pub/sub: subscribing", "channel", channel, "conn", ws.UUID(), "err", err)
					ws.CloseWithCode(wsext.CloseInternalError, "pub/sub unavailable")
				}
			}
			if w.remoteHistory && (sub.Envelope || sub.Since != nil) {
				// The history is a round trip away (the master, Redis):
				// not on the event loop that runs OnOpen.
				go subscribe()
			} else {
				subscribe()
			}
			exp.start(g, func() {
				w.auth.expired.Add(1)
				ws.CloseWithCode(closeTokenExpired, "token expired")
			})
		},
		OnMessage: func(ws *wsext.Conn, data []byte, isText bool) {
			if !mayPublish {
				w.auth.failures[authPublish].Add(1)
				w.rlog.Warn("auth publish", "closed a subscriber publishing outside its token's publish claim",
					"channel", channel, "conn", ws.UUID(), "user", g.user)
				ws.CloseWithCode(closePublishForbidden, "publishing not allowed")
				return
			}
			var err error
			if echo {
				err = w.ws.Publish(channel, data, isText)
			} else {
				err = ws.Publish(channel, data, isText)
			}
			if err != nil {
				// The other processes did not get the message: the
				// client hears of it, and may reconnect and send again.
				// With the engine down every message fails: one line a
				// second, with the count of the others.
				w.rlog.Warn("pubsub publish", "pub/sub: publish failed", "channel", channel, "conn", ws.UUID(), "err", err)
				ws.CloseWithCode(wsext.CloseTryAgainLater, "publish failed; try again later")
			}
		},
		OnShutdown: w.logShutdown,
		OnClose: func(ws *wsext.Conn) {
			exp.stop()
			w.logClose(ws)
		},
	})
}

// servePublish takes POST /publish/{channel}. The body is published as a
// text message when it is valid UTF-8, else as binary; Content-Type
// application/octet-stream makes it binary whatever it holds.
func (w *Worker) servePublish(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		// ctx.Error resets the headers: it comes first.
		ctx.Error("405 Method Not Allowed: publish with POST\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set("Allow", "POST")
		return
	}
	if w.cfg.PublishToken != "" {
		if err := checkBearer(ctx.Request.Header.Peek("Authorization"), w.cfg.PublishToken); err != nil {
			refuseBearer(ctx, err.Error())
			return
		}
	}
	channel, ok := channelOf(ctx, publishPrefix)
	if !ok {
		return
	}
	body := ctx.PostBody()
	isText := !bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("application/octet-stream")) && utf8.Valid(body)
	pos, err := w.ws.PublishPosition(channel, body, isText)
	if err != nil {
		w.rlog.Warn("publish", "pub/sub: POST /publish failed", "channel", channel, "err", err)
		ctx.Error("503 Service Unavailable: "+err.Error()+"\n", fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", "1")
		return
	}
	if w.cfg.HistorySize == 0 {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	// With history the publisher learns where its message stands.
	ctx.SetContentType("application/json")
	b := append(ctx.Response.Body()[:0], `{"offset":`...)
	b = strconv.AppendUint(b, pos.Offset, 10)
	b = append(b, `,"epoch":"`...)
	b = append(b, pos.Epoch...) // hex, nothing to escape
	ctx.SetBody(append(b, "\"}\n"...))
}

// refuseBearer answers 401 to a request without the publish token, with
// the challenge of RFC 6750: no error code when no credentials were sent.
func refuseBearer(ctx *fasthttp.RequestCtx, why string) {
	challenge := `Bearer realm="wsd"`
	if len(ctx.Request.Header.Peek("Authorization")) > 0 {
		challenge += `, error="invalid_token"`
	}
	// ctx.Error resets the headers: it comes first.
	ctx.Error("401 Unauthorized: "+why+"\n", fasthttp.StatusUnauthorized)
	ctx.Response.Header.Set("WWW-Authenticate", challenge)
}

// checkBearer checks an Authorization header against the token. Both sides
// are hashed first so that the comparison takes the same time whatever the
// lengths.
func checkBearer(header []byte, token string) error {
	scheme, cred, _ := bytes.Cut(header, []byte(" "))
	if len(header) == 0 || !bytes.EqualFold(scheme, []byte("Bearer")) {
		return errors.New("publishing needs an Authorization: Bearer <token> header")
	}
	got := sha256.Sum256(bytes.TrimSpace(cred))
	want := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return errors.New("wrong bearer token")
	}
	return nil
}

// subscribeOptions reads the envelope, recovery and presence query of
// /pubsub: ?format=json for messages in the JSON envelope that carries
// their offset and epoch, &offset=N&epoch=E to get first what was published
// after that position (docs/pubsub.md § History and recovery), and
// &presence=1 for the channel's join and leave events. A bad query is
// answered 400 here.
func subscribeOptions(ctx *fasthttp.RequestCtx) (wsext.SubscribeOptions, bool) {
	var opts wsext.SubscribeOptions
	args := ctx.QueryArgs()
	switch f := string(args.Peek("format")); f {
	case "", "raw":
	case "json":
		opts.Envelope = true
	default:
		ctx.Error("400 Bad Request: format must be json or raw\n", fasthttp.StatusBadRequest)
		return opts, false
	}
	events, ok := presenceQuery(ctx)
	if !ok {
		return opts, false
	}
	if events && !opts.Envelope {
		// Events are JSON: they could not be told from messages.
		ctx.Error("400 Bad Request: presence=1 needs format=json\n", fasthttp.StatusBadRequest)
		return opts, false
	}
	opts.PresenceEvents = events
	if !args.Has("offset") && !args.Has("epoch") {
		return opts, true
	}
	offset, err := strconv.ParseUint(string(args.Peek("offset")), 10, 64)
	if err != nil {
		ctx.Error("400 Bad Request: offset must be a whole number\n", fasthttp.StatusBadRequest)
		return opts, false
	}
	if !opts.Envelope {
		// Without offsets on its messages a client could not know where
		// it is after the replay.
		ctx.Error("400 Bad Request: offset and epoch need format=json\n", fasthttp.StatusBadRequest)
		return opts, false
	}
	opts.Since = &wsext.Position{Offset: offset, Epoch: string(args.Peek("epoch"))}
	return opts, true
}
