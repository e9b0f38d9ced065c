package worker

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/internal/jwtkey"
)

// Subscriber authentication. With --jwt-secret (HS256) or --jwt-public-key
// (RS256, ES256 or EdDSA, by the key's type) set, a /pubsub or /sse
// subscriber presents a JWT:
//
//	Authorization: Bearer <token>   (not from browsers' WebSocket or EventSource)
//	?token=<token>                  (browsers)
//	Cookie: wsd_token=<token>       (--jwt-cookie; browsers on the same site)
//
// looked for in that order, the first found being the one checked. Its
// claims:
//
//	sub       the user, for logs; optional
//	exp       required: a token that never expires is a credential that
//	          cannot be taken back, and it travels in URLs
//	nbf       honoured when present
//	channels  names, or prefixes ending in *, the token may subscribe to
//	publish   the same, for messages a /pubsub client sends
//
// The answers: 401 with WWW-Authenticate: Bearer when the token is missing
// or bad (malformed, signed with another key, with an algorithm other than
// the key's, alg none, expired, not yet valid, without exp); 403 when the
// channel is not in channels. On an open /pubsub connection, a message
// outside publish closes it with closePublishForbidden, and the token's
// expiry with closeTokenExpired; an /sse stream gets an "expired" event and
// ends.
//
// Expiry of open connections uses one runtime timer per authenticated
// connection (time.AfterFunc), stopped when the connection ends: Go keeps
// timers in per-CPU heaps, so a timer costs a small allocation and
// O(log n) to add or stop, nothing while it waits, and fires on time,
// where a sweep would visit every connection every second.

// The close codes of an authenticated /pubsub connection.
const (
	// closeTokenExpired: the token's exp passed while the connection was
	// open. Centrifugo's "connection expired": reconnect with a new token.
	closeTokenExpired = 3005
	// closePublishForbidden: the client sent a message on a channel its
	// token's publish claim does not cover. An application code, after
	// HTTP's 403; reconnecting with the same token does not help.
	closePublishForbidden = 4003
)

// tokenParam is the query parameter a token may come in.
const tokenParam = "token"

// claims are the claims of a subscriber token.
type claims struct {
	jwt.RegisteredClaims
	Channels []string `json:"channels,omitempty"`
	Publish  []string `json:"publish,omitempty"`
}

// grant is what a verified token allows.
type grant struct {
	user     string
	expires  time.Time
	channels []string
	publish  []string
}

// subject returns the token's subject, "" without authentication.
func (g *grant) subject() string {
	if g == nil {
		return ""
	}
	return g.user
}

// mayPublish reports whether g allows publishing on channel; a nil grant
// (authentication off) allows everything.
func (g *grant) mayPublish(channel string) bool {
	return g == nil || matchChannel(g.publish, channel)
}

// matchChannel reports whether channel is one of patterns: a pattern is a
// channel name, or a prefix followed by "*", which matches every channel
// that starts with it ("*" alone matches all). A "*" anywhere else is an
// ordinary character, which no channel name holds.
func matchChannel(patterns []string, channel string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(channel, prefix) {
				return true
			}
		} else if p == channel {
			return true
		}
	}
	return false
}

// An authReason is why an authentication failed, the label of
// wsd_auth_failures_total.
type authReason int

const (
	authMissing     authReason = iota // no token
	authMalformed                     // not a JWT, or claims of the wrong type
	authAlgorithm                     // an algorithm other than the key's, none among them
	authSignature                     // signed with another key
	authExpired                       // exp has passed
	authNotYetValid                   // nbf is ahead
	authClaims                        // exp missing, or another claim invalid
	authChannel                       // the channel is not in channels (403)
	authPublish                       // a /pubsub message outside publish (closed)
	numAuthReasons
)

var authReasonLabels = [numAuthReasons]string{
	"missing", "malformed", "algorithm", "signature", "expired", "not_yet_valid", "claims", "channel", "publish",
}

// authDescriptions are the error_description of each 401 and 403: fixed
// texts, so that nothing from the token reaches the header.
var authDescriptions = [numAuthReasons]string{
	"no token", "malformed token", "signing algorithm not accepted", "bad signature", "token expired",
	"token not valid yet", "invalid claims", "channel not allowed", "publishing not allowed",
}

func (r authReason) String() string { return authReasonLabels[r] }

// An authError is a failed authentication and its reason.
type authError struct {
	reason authReason
	err    error // the JWT library's error, if any
}

func (e *authError) Error() string {
	if e.err == nil {
		return "authentication: " + authDescriptions[e.reason]
	}
	return fmt.Sprintf("authentication: %s: %v", authDescriptions[e.reason], e.err)
}

func (e *authError) Unwrap() error { return e.err }

// authenticator verifies subscriber tokens and counts failures.
type authenticator struct {
	secret []byte     // HS256 key, or nil
	key    jwtkey.Key // RS256/ES256/EdDSA key, or the zero Key
	cookie string     // --jwt-cookie, or ""
	algs   []string   // the algorithms of secret and key
	parser *jwt.Parser
	now    func() time.Time

	failures [numAuthReasons]atomic.Uint64
	expired  atomic.Uint64 // open connections ended at their token's expiry
}

// newAuthenticator returns the authenticator for cfg, or nil when cfg
// requires no token.
func newAuthenticator(cfg config.Config) (*authenticator, error) {
	if cfg.JWTSecret == "" && cfg.JWTPublicKey == "" {
		return nil, nil
	}
	a := &authenticator{cookie: cfg.JWTCookie, now: time.Now}
	var algs []string
	if cfg.JWTSecret != "" {
		a.secret = []byte(cfg.JWTSecret)
		algs = append(algs, jwt.SigningMethodHS256.Alg())
	}
	if cfg.JWTPublicKey != "" {
		k, err := jwtkey.Load(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("worker: jwt-public-key %s: %w", cfg.JWTPublicKey, err)
		}
		a.key = k
		algs = append(algs, k.Alg)
	}
	// The algorithms are the keys' own: a token cannot choose HS256 to be
	// checked against a public key, nor none.
	a.algs = algs
	a.parser = jwt.NewParser(
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		// Canonical base64 only: one token, one spelling.
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(func() time.Time { return a.now() }),
	)
	return a, nil
}

// keyFor returns the key that verifies a token of the token's algorithm.
// The parser has already refused every other algorithm; this check stands
// in case that ever changes.
func (a *authenticator) keyFor(t *jwt.Token) (any, error) {
	switch alg := t.Method.Alg(); {
	case a.secret != nil && alg == jwt.SigningMethodHS256.Alg():
		return a.secret, nil
	case a.key.Public != nil && alg == a.key.Alg:
		return a.key.Public, nil
	default:
		return nil, fmt.Errorf("algorithm %q not accepted", alg)
	}
}

// verify checks a token and returns its grant, or an *authError.
func (a *authenticator) verify(token string) (*grant, error) {
	if token == "" {
		return nil, &authError{reason: authMissing}
	}
	var c claims
	t, err := a.parser.ParseWithClaims(token, &c, a.keyFor)
	if err != nil {
		return nil, &authError{reason: a.classify(t, err), err: err}
	}
	return &grant{user: c.Subject, expires: c.ExpiresAt.Time, channels: c.Channels, publish: c.Publish}, nil
}

// classify names the reason of a jwt error. jwt reports an algorithm the
// parser refused as a bad signature: the token's header, which comes back
// with the error, tells the two apart.
func (a *authenticator) classify(t *jwt.Token, err error) authReason {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return authMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return authAlgorithm // an unknown alg, or keyFor's refusal
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		var alg string
		if t != nil {
			alg, _ = t.Header["alg"].(string)
		}
		if !slices.Contains(a.algs, alg) {
			return authAlgorithm
		}
		return authSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return authExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return authNotYetValid
	default:
		return authClaims
	}
}

// tokenFrom returns the token a request presents: an Authorization header
// with the Bearer scheme, else the token query parameter, else the cookie;
// "" when there is none. Another scheme in Authorization is not a token for
// wsd (it may be a proxy's) and is passed over.
func tokenFrom(h *fasthttp.RequestHeader, args *fasthttp.Args, cookie string) string {
	if auth := h.Peek("Authorization"); len(auth) > 0 {
		scheme, cred, _ := bytes.Cut(bytes.TrimSpace(auth), []byte(" "))
		if bytes.EqualFold(scheme, []byte("Bearer")) {
			if tok := bytes.TrimSpace(cred); len(tok) > 0 {
				return string(tok)
			}
		}
	}
	if tok := args.Peek(tokenParam); len(tok) > 0 {
		return string(tok)
	}
	if cookie != "" {
		if tok := h.Cookie(cookie); len(tok) > 0 {
			return string(tok)
		}
	}
	return ""
}

// authorize checks the token of a subscription request to channel. It
// returns the token's grant, nil with authentication off; or writes a 401
// or 403 and returns false.
func (w *Worker) authorize(ctx *fasthttp.RequestCtx, channel string) (*grant, bool) {
	a := w.auth
	if a == nil {
		return nil, true
	}
	g, err := a.verify(tokenFrom(&ctx.Request.Header, ctx.QueryArgs(), a.cookie))
	if err == nil && !matchChannel(g.channels, channel) {
		err = &authError{reason: authChannel}
	}
	if err == nil {
		return g, true
	}
	var ae *authError
	if !errors.As(err, &ae) {
		ae = &authError{reason: authClaims, err: err}
	}
	a.failures[ae.reason].Add(1)
	// A missing, expired or narrow token is everyday churn; a forged or
	// garbled one may be an attack.
	level := slog.LevelInfo
	switch ae.reason {
	case authMalformed, authAlgorithm, authSignature:
		level = slog.LevelWarn
	}
	w.rlog.Log(level, "auth "+ae.reason.String(), "refused a subscriber", "path", string(ctx.Path()),
		"remote", ctx.RemoteIP().String(), "reason", ae.reason.String(), "err", err)
	// RFC 6750 section 3: no error code when no token was sent;
	// insufficient_scope with 403. ctx.Error resets the headers: it comes
	// first.
	desc := authDescriptions[ae.reason]
	switch ae.reason {
	case authMissing:
		ctx.Error("401 Unauthorized: "+desc+"\n", fasthttp.StatusUnauthorized)
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="wsd"`)
	case authChannel:
		ctx.Error("403 Forbidden: "+desc+"\n", fasthttp.StatusForbidden)
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="wsd", error="insufficient_scope", error_description="`+desc+`"`)
	default:
		ctx.Error("401 Unauthorized: "+desc+"\n", fasthttp.StatusUnauthorized)
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="wsd", error="invalid_token", error_description="`+desc+`"`)
	}
	return nil, false
}

// expiry ends a connection when its token expires: one runtime timer,
// armed by start and stopped by stop, in either order and from any
// goroutine.
type expiry struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// start arms the timer to call f at the grant's expiry (at once if it has
// passed); nothing happens for a nil grant or after stop.
func (e *expiry) start(g *grant, f func()) {
	if g == nil || g.expires.IsZero() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.stopped && e.t == nil {
		e.t = time.AfterFunc(time.Until(g.expires), f)
	}
}

func (e *expiry) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	if e.t != nil {
		e.t.Stop()
	}
}
