package worker

import (
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// originChecker builds the upgrade's Origin check from --allowed-origins:
// nil (wsext's default: no Origin, or one naming the request's host) when
// the list is empty; anything for "*"; otherwise exact scheme://host[:port]
// entries and "scheme://*.example.com" for any subdomain of example.com.
func originChecker(allowed []string) func(*fasthttp.RequestCtx) bool {
	if len(allowed) == 0 {
		return nil
	}
	type pattern struct{ scheme, host, suffix string }
	var pats []pattern
	for _, a := range allowed {
		if a == "*" {
			return func(*fasthttp.RequestCtx) bool { return true }
		}
		u, err := url.Parse(strings.ToLower(a))
		if err != nil {
			continue
		}
		if rest, ok := strings.CutPrefix(u.Host, "*."); ok {
			pats = append(pats, pattern{scheme: u.Scheme, suffix: "." + rest})
		} else {
			pats = append(pats, pattern{scheme: u.Scheme, host: u.Host})
		}
	}
	return func(ctx *fasthttp.RequestCtx) bool {
		origin := ctx.Request.Header.Peek("Origin")
		if len(origin) == 0 {
			return true // not a browser: Origin is a browser's protection
		}
		u, err := url.Parse(strings.ToLower(string(origin)))
		if err != nil {
			return false
		}
		for _, p := range pats {
			if p.scheme != u.Scheme {
				continue
			}
			if p.host != "" && p.host == u.Host {
				return true
			}
			if p.suffix != "" && strings.HasSuffix(u.Host, p.suffix) && len(u.Host) > len(p.suffix) {
				return true
			}
		}
		return false
	}
}
