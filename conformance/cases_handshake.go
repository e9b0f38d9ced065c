package conformance

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

const catHandshake = "0 Opening Handshake"

// handshakeCases check the server side of RFC 6455 section 4.2.
func handshakeCases() []Case {
	var cs []Case
	add := func(desc string, run caseFunc) {
		cs = append(cs, Case{ID: fmt.Sprintf("0.%d", len(cs)+1), Category: catHandshake, Description: desc, Run: run})
	}
	add("Send a valid handshake; expect 101 with the right Sec-WebSocket-Accept, Upgrade and Connection, no extension or subprotocol, then a working echo.",
		upgrades(func(r *request) {}, nil))
	add("Send a handshake without Sec-WebSocket-Key; expect 400.",
		refused(func(r *request) { r.del("Sec-WebSocket-Key", 0) }, []int{400}, nil))
	add("Send a Sec-WebSocket-Key that decodes to 10 bytes instead of 16; expect 400.",
		refused(func(r *request) { r.set("Sec-WebSocket-Key", "dGhlIHNhbXBsZQ==") }, []int{400}, nil))
	add("Send a Sec-WebSocket-Key that is not base64; expect 400.",
		refused(func(r *request) { r.set("Sec-WebSocket-Key", "!!!!not base64 at all!!!") }, []int{400}, nil))
	add("Send Sec-WebSocket-Version: 8; expect 426 Upgrade Required with Sec-WebSocket-Version: 13 (another 4xx with the header is NON-STRICT).",
		refused(func(r *request) { r.set("Sec-WebSocket-Version", "8") }, []int{426}, versionHeader))
	add("Send a handshake without Sec-WebSocket-Version; expect 400 or 426.",
		refused(func(r *request) { r.del("Sec-WebSocket-Version", 0) }, []int{400, 426}, nil))
	add("Send the handshake with method POST; expect 405 (or 400).",
		refused(func(r *request) { r.method = "POST"; r.set("Content-Length", "0") }, []int{405, 400}, nil))
	add("Send the handshake without an Upgrade header; expect no upgrade (400, or a plain HTTP answer).",
		refused(func(r *request) { r.del("Upgrade", 0) }, nil, nil))
	add("Send the handshake without a Connection: Upgrade header; expect no upgrade (400, or a plain HTTP answer).",
		refused(func(r *request) { r.set("Connection", "keep-alive") }, nil, nil))
	add("Send the handshake with Upgrade: h2c instead of websocket; expect no upgrade.",
		refused(func(r *request) { r.set("Upgrade", "h2c") }, nil, nil))
	add("Send the handshake as HTTP/1.0 (RFC 6455 4.1 requires 1.1 or higher); expect no upgrade.",
		refused(func(r *request) { r.proto = "HTTP/1.0" }, nil, nil))
	add("Send the handshake without a Host header (RFC 6455 4.1 requires one); expect 400.",
		refused(func(r *request) { r.del("Host", 0) }, []int{400}, nil))
	add("Send Upgrade: WebSocket and Connection: keep-alive, Upgrade (values are case-insensitive token lists); expect 101.",
		upgrades(func(r *request) { r.set("Upgrade", "WebSocket"); r.set("Connection", "keep-alive, Upgrade") }, nil))
	add("Send every header name and value in lower case; expect 101.",
		upgrades(func(r *request) {
			for i, h := range r.headers {
				r.headers[i][0] = strings.ToLower(h[0])
				if !strings.EqualFold(h[0], "Sec-WebSocket-Key") {
					r.headers[i][1] = strings.ToLower(h[1])
				}
			}
		}, nil))
	add("Send an Origin header naming the server's own host; expect 101.",
		upgrades(func(r *request) { r.set("Origin", "http://"+r.get("Host")) }, nil))
	add("Offer subprotocols \"chat, superchat\"; expect 101 with either no Sec-WebSocket-Protocol or one of those two.",
		upgrades(func(r *request) { r.set("Sec-WebSocket-Protocol", "chat, superchat") }, nil))
	add("Offer an unknown extension \"x-foo; bar=1\"; expect 101 without Sec-WebSocket-Extensions.",
		upgrades(func(r *request) { r.set("Sec-WebSocket-Extensions", "x-foo; bar=1") }, func(resp *http.Response) error {
			if ext := resp.Header.Values("Sec-WebSocket-Extensions"); len(ext) > 0 {
				return fmt.Errorf("server accepted %q for an unknown extension", ext)
			}
			return nil
		}))
	add("Send the handshake with a text frame in the same TCP write; expect 101 and the echo (the frame must not be lost).",
		pipelined)
	return cs
}

// versionHeader checks that a refused version is answered with the
// versions the server speaks (RFC 6455 section 4.2.2).
func versionHeader(resp *http.Response) error {
	if !headerHasToken(resp.Header, "Sec-WebSocket-Version", "13") {
		return fmt.Errorf("refusal without Sec-WebSocket-Version: 13 (got %q)", resp.Header.Values("Sec-WebSocket-Version"))
	}
	return nil
}

// upgrades sends a handshake changed by edit and expects a valid 101, then
// an echo and a clean close.
func upgrades(edit func(*request), check func(*http.Response) error) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		req := newRequest(t)
		edit(req)
		c, resp, err := dial(ctx, t, req, nil)
		if err != nil {
			return failedErr(err)
		}
		if c == nil {
			return failed("handshake answered %s, want 101", resp.Status)
		}
		defer c.close()
		if err := checkUpgrade(req, resp); err != nil {
			return failedErr(err)
		}
		if req.get("Sec-WebSocket-Extensions") == "" && len(resp.Header.Values("Sec-WebSocket-Extensions")) > 0 {
			return failed("server accepted extensions %q nobody offered", resp.Header.Values("Sec-WebSocket-Extensions"))
		}
		if check != nil {
			if err := check(resp); err != nil {
				return failedErr(err)
			}
		}
		return c.play(closes(), send(oneChop, textFrame(helloWorld)), expectText(helloWorld))
	}
}

// refused sends a handshake changed by edit, which the server must not
// upgrade. A status in want is OK (nil: any non-101 answer is); another 4xx
// is NON-STRICT; check, if set, must hold for the answer.
func refused(edit func(*request), want []int, check func(*http.Response) error) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		req := newRequest(t)
		edit(req)
		c, resp, err := dial(ctx, t, req, nil)
		if err != nil {
			return failedErr(err)
		}
		if c != nil {
			c.close()
			return failed("server upgraded the connection (101) for an invalid handshake")
		}
		if check != nil {
			if err := check(resp); err != nil {
				return failedErr(err)
			}
		}
		if want == nil && resp.StatusCode < 500 {
			return ok("not upgraded: answered %s", resp.Status)
		}
		for _, code := range want {
			if resp.StatusCode == code {
				return ok("refused with %s", resp.Status)
			}
		}
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return nonStrict("refused with %s (want %s)", resp.Status, joinCodes(want))
		}
		return failed("answered %s, want %s", resp.Status, joinCodes(want))
	}
}

// pipelined sends a frame right behind the handshake: a server that reads
// the request through a buffer must hand the buffered bytes to the
// WebSocket connection.
func pipelined(ctx context.Context, t *Target) Result {
	req := newRequest(t)
	c, resp, err := dial(ctx, t, req, encode(textFrame(helloWorld)))
	if err != nil {
		return failedErr(err)
	}
	if c == nil {
		return failed("handshake answered %s, want 101", resp.Status)
	}
	defer c.close()
	if err := checkUpgrade(req, resp); err != nil {
		return failedErr(err)
	}
	return c.play(closes(), expectText(helloWorld))
}
