package worker

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/config"
)

// testSecret is the HS256 key of the tests.
const testSecret = "0123456789abcdef0123456789abcdef-test"

// sign returns a token of claims signed with method and key.
func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsFor are claims for channels, valid for a minute.
func claimsFor(channels ...string) jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Minute).Unix(), "channels": channels}
}

func hs256(t testing.TB, c jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c)
}

// writePEM writes a public key as a PKIX PEM file and returns its name.
func writePEM(t testing.TB, pub crypto.PublicKey) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	name := filepath.Join(t.TempDir(), "jwt.pub.pem")
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return name, b
}

// An attempt is how a client presents a token.
type attempt struct {
	header, query, cookie string // the token in Authorization: Bearer, ?token=, Cookie: wsd_token=
	rawAuth, rawCookie    string // an Authorization or Cookie header as is
}

func (a attempt) path(base string) string {
	if a.query != "" {
		return base + "?token=" + url.QueryEscape(a.query)
	}
	return base
}

func (a attempt) headers() http.Header {
	h := http.Header{}
	if a.header != "" {
		h.Set("Authorization", "Bearer "+a.header)
	}
	if a.rawAuth != "" {
		h.Set("Authorization", a.rawAuth)
	}
	if a.cookie != "" {
		h.Set("Cookie", "wsd_token="+a.cookie)
	}
	if a.rawCookie != "" {
		h.Set("Cookie", a.rawCookie)
	}
	return h
}

// subscribeStatus tries /pubsub/{channel} and /sse/{channel} with a and
// returns both statuses and the WWW-Authenticate of the first refusal.
func subscribeStatus(t *testing.T, s *serving, channel string, a attempt) (ws, sse int, challenge string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, s.url("ws", a.path("/pubsub/"+channel)), &websocket.DialOptions{HTTPHeader: a.headers()})
	switch {
	case err == nil:
		ws = resp.StatusCode
		c.CloseNow()
	case resp != nil:
		ws = resp.StatusCode
		challenge = resp.Header.Get("WWW-Authenticate")
	default:
		t.Fatalf("dial: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url("http", a.path("/sse/"+channel)), nil)
	req.Header = a.headers()
	r, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK && r.Header.Get("WWW-Authenticate") != challenge {
		t.Errorf("/sse says WWW-Authenticate %q, /pubsub %q", r.Header.Get("WWW-Authenticate"), challenge)
	}
	return ws, r.StatusCode, challenge
}

// TestAuthHS256 goes through every answer to a token, on both subscriber
// endpoints, and checks the metric of each refusal.
func TestAuthHS256(t *testing.T) {
	cfg := testConfig()
	cfg.JWTSecret = testSecret
	reg := prometheus.NewPedanticRegistry()
	s := serveOpts(t, cfg, Options{Metrics: reg})

	good := hs256(t, claimsFor("room"))
	expired := hs256(t, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix(), "channels": []string{"room"}})
	noExp := hs256(t, jwt.MapClaims{"channels": []string{"room"}})
	notYet := hs256(t, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "nbf": time.Now().Add(30 * time.Minute).Unix(), "channels": []string{"room"}})
	otherKey := sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!!"), claimsFor("room"))
	hs384 := sign(t, jwt.SigningMethodHS384, []byte(testSecret), claimsFor("room"))
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor("room"))
	// A token whose header says HS256 and whose payload was changed after
	// signing.
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + strings.Split(hs256(t, claimsFor("*")), ".")[1] + "." + parts[2]
	badType := hs256(t, jwt.MapClaims{"exp": time.Now().Add(time.Minute).Unix(), "channels": "room"})

	tests := []struct {
		name      string
		a         attempt
		channel   string
		status    int
		reason    string // wsd_auth_failures_total label, "" for none
		challenge string // start of WWW-Authenticate
	}{
		{"header", attempt{header: good}, "room", 0, "", ""},
		{"query", attempt{query: good}, "room", 0, "", ""},
		{"cookie", attempt{cookie: good}, "room", 0, "", ""},
		{"header first", attempt{header: good, query: "junk", cookie: "junk"}, "room", 0, "", ""},
		{"other scheme passed over", attempt{rawAuth: "Basic dXNlcjpwdw==", query: good}, "room", 0, "", ""},
		{"no token", attempt{}, "room", 401, "missing", `Bearer realm="wsd"`},
		{"empty bearer", attempt{rawAuth: "Bearer "}, "room", 401, "missing", `Bearer realm="wsd"`},
		{"malformed", attempt{query: "not.a.jwt"}, "room", 401, "malformed", `Bearer realm="wsd", error="invalid_token"`},
		{"claim of the wrong type", attempt{query: badType}, "room", 401, "malformed", `Bearer realm="wsd", error="invalid_token"`},
		{"expired", attempt{header: expired}, "room", 401, "expired", `Bearer realm="wsd", error="invalid_token", error_description="token expired"`},
		{"no exp", attempt{header: noExp}, "room", 401, "claims", `Bearer realm="wsd", error="invalid_token"`},
		{"not valid yet", attempt{header: notYet}, "room", 401, "not_yet_valid", `Bearer realm="wsd", error="invalid_token"`},
		{"wrong signature", attempt{header: otherKey}, "room", 401, "signature", `Bearer realm="wsd", error="invalid_token", error_description="bad signature"`},
		{"tampered", attempt{header: tampered}, "room", 401, "signature", `Bearer realm="wsd", error="invalid_token"`},
		{"HS384", attempt{header: hs384}, "room", 401, "algorithm", `Bearer realm="wsd", error="invalid_token", error_description="signing algorithm not accepted"`},
		{"alg none", attempt{query: none}, "room", 401, "algorithm", `Bearer realm="wsd", error="invalid_token"`},
		{"channel outside the claims", attempt{header: good}, "lobby", 403, "channel", `Bearer realm="wsd", error="insufficient_scope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sample(t, reg, "wsd_auth_failures_total", "reason", tt.reason)
			ws, sse, challenge := subscribeStatus(t, s, tt.channel, tt.a)
			if tt.status == 0 {
				if ws != http.StatusSwitchingProtocols || sse != http.StatusOK {
					t.Fatalf("/pubsub %d, /sse %d; want 101 and 200", ws, sse)
				}
				return
			}
			if ws != tt.status || sse != tt.status {
				t.Errorf("/pubsub %d, /sse %d; want %d", ws, sse, tt.status)
			}
			if !strings.HasPrefix(challenge, tt.challenge) {
				t.Errorf("WWW-Authenticate %q, want it to start with %q", challenge, tt.challenge)
			}
			if got := sample(t, reg, "wsd_auth_failures_total", "reason", tt.reason); got != before+2 {
				t.Errorf("wsd_auth_failures_total{reason=%q} went from %v to %v, want +2", tt.reason, before, got)
			}
		})
	}
}

// TestAuthPublicKeys: each kind of public key verifies its own algorithm
// only. An HS256 token "signed" with the public key's PEM, the classic
// confusion attack, is refused, as is a token of another key of the same
// kind.
func TestAuthPublicKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaOther, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecOther, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_, edOther, _ := ed25519.GenerateKey(rand.Reader)

	tests := []struct {
		name        string
		pub         crypto.PublicKey
		method      jwt.SigningMethod
		key, other  crypto.Signer
		wrongMethod jwt.SigningMethod // same kind of key, another algorithm
	}{
		{"RS256", &rsaKey.PublicKey, jwt.SigningMethodRS256, rsaKey, rsaOther, jwt.SigningMethodPS256},
		{"ES256", &ecKey.PublicKey, jwt.SigningMethodES256, ecKey, ecOther, nil},
		{"EdDSA", edPub, jwt.SigningMethodEdDSA, edKey, edOther, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, pemBytes := writePEM(t, tt.pub)
			cfg := testConfig()
			cfg.JWTPublicKey = name
			valid := cfg
			valid.Port = 3000 // 0, a free port, is for tests only
			if err := valid.Validate(); err != nil {
				t.Fatal(err)
			}
			s := serveOpts(t, cfg, Options{})
			c := claimsFor("room")
			cases := []struct {
				what   string
				token  string
				status int
				reason authReason
			}{
				{"its own key", sign(t, tt.method, tt.key, c), 0, 0},
				{"another key", sign(t, tt.method, tt.other, c), 401, authSignature},
				{"HS256 with the PEM as secret", sign(t, jwt.SigningMethodHS256, pemBytes, c), 401, authAlgorithm},
			}
			if tt.wrongMethod != nil {
				cases = append(cases, struct {
					what   string
					token  string
					status int
					reason authReason
				}{"another algorithm", sign(t, tt.wrongMethod, tt.key, c), 401, authAlgorithm})
			}
			for _, cs := range cases {
				before := s.auth.failures[cs.reason].Load()
				ws, sse, _ := subscribeStatus(t, s, "room", attempt{query: cs.token})
				if cs.status == 0 {
					if ws != 101 || sse != 200 {
						t.Errorf("%s: /pubsub %d, /sse %d; want 101 and 200", cs.what, ws, sse)
					}
					continue
				}
				if ws != cs.status || sse != cs.status {
					t.Errorf("%s: /pubsub %d, /sse %d; want %d", cs.what, ws, sse, cs.status)
				}
				if got := s.auth.failures[cs.reason].Load(); got != before+2 {
					t.Errorf("%s: failures{%s} %d, want %d", cs.what, cs.reason, got, before+2)
				}
			}
		})
	}
}

// TestAuthChannelClaims checks names and prefixes in the channels claim,
// by query parameter and by the configured cookie.
func TestAuthChannelClaims(t *testing.T) {
	cfg := testConfig()
	cfg.JWTSecret = testSecret
	cfg.JWTCookie = "session_tok"
	s := serveOpts(t, cfg, Options{})
	tests := []struct {
		channels []string
		channel  string
		ok       bool
	}{
		{[]string{"news"}, "news", true},
		{[]string{"news"}, "news2", false},
		{[]string{"chat:*"}, "chat:42", true},
		{[]string{"chat:*"}, "chat:", true},
		{[]string{"chat:*"}, "chat", false},
		{[]string{"chat:*", "news"}, "news", true},
		{[]string{"*"}, "anything", true},
		{[]string{"a*b"}, "axb", false},
		{nil, "news", false},
	}
	for _, tt := range tests {
		tok := hs256(t, claimsFor(tt.channels...))
		for _, a := range []attempt{{query: tok}, {rawCookie: "x=1; " + cfg.JWTCookie + "=" + tok}} {
			ws, sse, _ := subscribeStatus(t, s, tt.channel, a)
			if tt.ok && (ws != 101 || sse != 200) || !tt.ok && (ws != 403 || sse != 403) {
				t.Errorf("%q on %q (%+v): /pubsub %d, /sse %d; want ok %v", tt.channels, tt.channel, a, ws, sse, tt.ok)
			}
		}
		// wsd_token is not the configured cookie: it is not looked at.
		if ws, sse, _ := subscribeStatus(t, s, tt.channel, attempt{cookie: tok}); ws != 401 || sse != 401 {
			t.Errorf("token in cookie wsd_token with --jwt-cookie %s: /pubsub %d, /sse %d; want 401", cfg.JWTCookie, ws, sse)
		}
	}
}

// TestAuthPublishClaim: a /pubsub client publishes only within its token's
// publish claim; outside it, it is closed with 4003 and nothing reaches
// the channel.
func TestAuthPublishClaim(t *testing.T) {
	cfg := testConfig()
	cfg.JWTSecret = testSecret
	s := serveOpts(t, cfg, Options{})

	listenerTok := hs256(t, claimsFor("room"))
	listener, _ := wsDial(t, s.url("ws", "/pubsub/room?token="+listenerTok), nil)

	c := claimsFor("room")
	c["publish"] = []string{"ro*"}
	talker, _ := wsDial(t, s.url("ws", "/pubsub/room?token="+hs256(t, c)), nil)
	mute, _ := wsDial(t, s.url("ws", "/pubsub/room?token="+hs256(t, claimsFor("room"))), nil)
	waitUntil(t, "three subscribers", 5*time.Second, func() bool { return s.WebSocket().Subscribers("room") == 3 })

	writeMsg(t, mute, websocket.MessageText, []byte("not allowed"))
	if code := closeStatus(t, mute); code != closePublishForbidden {
		t.Errorf("publishing outside the claim: close %d, want %d", code, closePublishForbidden)
	}
	writeMsg(t, talker, websocket.MessageText, []byte("allowed"))
	if _, got := readMsg(t, listener); string(got) != "allowed" {
		t.Errorf("the listener got %q, want only the allowed message", got)
	}
	if n := s.auth.failures[authPublish].Load(); n != 1 {
		t.Errorf("failures{publish} = %d, want 1", n)
	}
}

// TestAuthExpiryClosesOpenConnections: a /pubsub connection is closed with
// 3005, and an /sse stream gets an expired event and ends, when the token
// expires; the worker forgets both.
func TestAuthExpiryClosesOpenConnections(t *testing.T) {
	cfg := testConfig()
	cfg.JWTSecret = testSecret
	s := serveOpts(t, cfg, Options{})
	// exp has a one-second resolution: the token lives 2 to 3 s.
	tok := hs256(t, jwt.MapClaims{"exp": time.Now().Add(3 * time.Second).Unix(), "channels": []string{"room"}})
	start := time.Now()

	ws, _ := wsDial(t, s.url("ws", "/pubsub/room?token="+tok), nil)
	stream := openSSE(t, s, "/sse/room?token="+tok, nil)

	var wg sync.WaitGroup
	wg.Add(1)
	var sseErr error
	go func() {
		defer wg.Done()
		ev, err := stream.next(20 * time.Second)
		if err == nil && (ev.event != "expired" || ev.data != "token expired") {
			err = errors.New("first event " + ev.String() + ", want the expired event")
		}
		if err == nil {
			if _, err = stream.next(20 * time.Second); err == nil {
				err = errors.New("the stream went on after the expired event")
			} else if errors.Is(err, errEOF) {
				err = nil
			}
		}
		sseErr = err
	}()
	if code := closeStatus(t, ws); code != closeTokenExpired {
		t.Errorf("close %d, want %d", code, closeTokenExpired)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("closed after %s, before the token expired", d)
	}
	wg.Wait()
	if sseErr != nil {
		t.Error(sseErr)
	}
	waitUntil(t, "no subscriber left", 10*time.Second, func() bool {
		return s.WebSocket().Subscribers("room") == 0 && s.WebSocket().FuncSubscribers("room") == 0
	})
	if n := s.auth.expired.Load(); n != 2 {
		t.Errorf("expired = %d, want 2", n)
	}
}

// TestAuthOffKeepsEndpointsOpen: without a key nothing is asked, and a
// token is not looked at.
func TestAuthOffKeepsEndpointsOpen(t *testing.T) {
	s := serve(t, testConfig())
	ws, sse, _ := subscribeStatus(t, s, "room", attempt{query: "junk"})
	if ws != 101 || sse != 200 {
		t.Errorf("/pubsub %d, /sse %d; want 101 and 200", ws, sse)
	}
}

func TestMatchChannel(t *testing.T) {
	tests := []struct {
		patterns []string
		channel  string
		want     bool
	}{
		{[]string{"a"}, "a", true},
		{[]string{"a"}, "ab", false},
		{[]string{"a*"}, "a", true},
		{[]string{"a*"}, "ab", true},
		{[]string{"a*"}, "ba", false},
		{[]string{"*"}, "x", true},
		{[]string{"**"}, "x", false},
		{[]string{"a*b"}, "a*b", true},
		{[]string{""}, "a", false},
		{nil, "a", false},
	}
	for _, tt := range tests {
		if got := matchChannel(tt.patterns, tt.channel); got != tt.want {
			t.Errorf("matchChannel(%q, %q) = %v, want %v", tt.patterns, tt.channel, got, tt.want)
		}
	}
}

func TestTokenFrom(t *testing.T) {
	tests := []struct {
		auth, query, cookie string
		want                string
	}{
		{"Bearer abc", "", "", "abc"},
		{"bearer   abc  ", "", "", "abc"},
		{"Basic abc", "token=q", "", "q"},
		{"Bearer", "token=q", "", "q"},
		{"", "token=q", "wsd_token=c", "q"},
		{"", "", "wsd_token=c", "c"},
		{"", "", "other=c", ""},
		{"", "tok=q", "", ""},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		var req fasthttp.Request
		req.SetRequestURI("/sse/x?" + tt.query)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		if tt.cookie != "" {
			req.Header.Set("Cookie", tt.cookie)
		}
		if got := tokenFrom(&req.Header, req.URI().QueryArgs(), "wsd_token"); got != tt.want {
			t.Errorf("tokenFrom(%q, %q, %q) = %q, want %q", tt.auth, tt.query, tt.cookie, got, tt.want)
		}
	}
}

// FuzzAuthToken feeds untrusted input through token extraction and
// verification: no panic, and nothing but a token signed with the key is
// accepted.
func FuzzAuthToken(f *testing.F) {
	a, err := newAuthenticator(config.Config{JWTSecret: testSecret, JWTCookie: "wsd_token"})
	if err != nil {
		f.Fatal(err)
	}
	// A fixed exp (2100-01-01) makes the one good token the same in every
	// run, so that the corpus of an earlier run holds no other.
	good := hs256(f, jwt.MapClaims{"sub": "alice", "exp": 4102444800, "channels": []string{"room"}})
	for _, s := range []string{good, "Bearer " + good, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.",
		strings.Replace(good, ".", "..", 1), good[:len(good)-2]} {
		f.Add(s, s, s)
	}
	f.Fuzz(func(t *testing.T, auth, query, cookie string) {
		var req fasthttp.Request
		req.Header.Set("Authorization", auth)
		req.URI().QueryArgs().Set("token", query)
		req.Header.SetCookie("wsd_token", cookie)
		tok := tokenFrom(&req.Header, req.URI().QueryArgs(), "wsd_token")
		g, err := a.verify(tok)
		var ae *authError
		switch {
		case err != nil && !errors.As(err, &ae):
			t.Fatalf("verify(%q) = %v, not an *authError", tok, err)
		case err == nil && tok != good:
			t.Fatalf("verify(%q) accepted a token the tests never signed", tok)
		case err == nil && g.user != "alice":
			t.Fatalf("verify(%q) = %+v", tok, g)
		}
	})
}
