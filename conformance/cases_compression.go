package conformance

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	catCompressionPayloads = "12 Compression (payloads)"
	catCompressionParams   = "13 Compression (parameters)"
	pmd                    = "permessage-deflate"
)

// sendMessage sends one data message, compressed with the negotiated
// permessage-deflate when compressed is set, in fragments of at most frag
// octets (0: one frame). Only the first frame carries RSV1 (RFC 7692
// section 6.1).
func (c *conn) sendMessage(op byte, payload []byte, compressed bool, frag int) error {
	data := payload
	if compressed {
		var err error
		if data, err = c.pmd.compress(payload); err != nil {
			return fmt.Errorf("compress: %w", err)
		}
	}
	frames := messageFrames(op, data, frag)
	if compressed {
		frames[0].rsv = rsv1
	}
	c.send(oneChop, frames...)
	return nil
}

// echoes sends messages and expects each echoed before the next is sent.
func (c *conn) echoes(op byte, msgs [][]byte, compressed bool, frag int) error {
	for i, m := range msgs {
		if err := c.sendMessage(op, m, compressed, frag); err != nil {
			return err
		}
		if err := c.expectMessage(op, m); err != nil {
			return fmt.Errorf("message %d of %d: %w", i+1, len(msgs), err)
		}
	}
	return nil
}

// jsonCorpus is text that compresses like real application traffic.
var jsonCorpus = sync.OnceValue(func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	words := []string{"alpha", "beta", "gamma", "delta", "κόσμε", "epsilon", "zeta", "ηθ", "€uro", "theta"}
	for b.Len() < 256*kib {
		fmt.Fprintf(&b, `{"id":%d,"user":"%s-%d","tags":["%s","%s"],"score":%.4f,"active":%t},`,
			r.IntN(1e6), words[r.IntN(len(words))], r.IntN(1000), words[r.IntN(len(words))], words[r.IntN(len(words))], r.Float64(), r.IntN(2) == 0)
	}
	return b.Bytes()
})

// corpusSlice returns n octets of the JSON corpus starting near offset i,
// cut on code point boundaries so the text stays valid UTF-8.
func corpusSlice(i, n int) []byte {
	c := jsonCorpus()
	start := (i * 7919) % (len(c) - n)
	for start > 0 && !utf8.RuneStart(c[start]) {
		start--
	}
	out := bytes.Clone(c[start : start+n])
	for j := len(out) - 1; j >= 0 && !utf8.Valid(out); j-- {
		out[j] = ' '
	}
	return out
}

// payloadKinds are the payloads of 12.x, after Autobahn's 12.1-12.5.
var payloadKinds = []struct {
	title   string
	op      byte
	frag    int
	mixed   bool // alternate compressed and uncompressed messages
	makeMsg func(i, n int) []byte
}{
	{title: "JSON-like text", op: opText, makeMsg: corpusSlice},
	{title: "random binary (incompressible)", op: opBinary, makeMsg: func(i, n int) []byte { return payloadFor(opBinary, n+i)[i:] }},
	{title: "the same text message repeated (exercises context takeover)", op: opText, makeMsg: func(_, n int) []byte { return corpusSlice(0, n) }},
	{title: "JSON-like text, compressed payload in fragments of 100 octets", op: opText, frag: 100, makeMsg: corpusSlice},
	{title: "JSON-like binary, compressed and uncompressed messages alternating", op: opBinary, mixed: true, makeMsg: corpusSlice},
}

func compressionCases() []Case {
	var cs []Case
	add := func(cat, id, desc string, run caseFunc) {
		cs = append(cs, Case{ID: id, Category: cat, Description: desc, Compression: true, Run: run})
	}
	for g, kind := range payloadKinds {
		for i, n := range []int{16, 64, 256, kib, 4 * kib, 16 * kib, 64 * kib} {
			add(catCompressionPayloads, fmt.Sprintf("12.%d.%d", g+1, i+1),
				fmt.Sprintf("Offer permessage-deflate; send 10 compressed messages of %d octets: %s; expect every echo.", n, kind.title),
				func(ctx context.Context, t *Target) Result {
					c, err := openAccepted(ctx, t, pmd)
					if err != nil {
						return failedErr(err)
					}
					defer c.close()
					return c.play(closes(), func(c *conn) error {
						for m := range 10 {
							msg := kind.makeMsg(m, n)
							compressed := !kind.mixed || m%2 == 0
							if err := c.sendMessage(kind.op, msg, compressed, kind.frag); err != nil {
								return err
							}
							if err := c.expectMessage(kind.op, msg); err != nil {
								return fmt.Errorf("message %d of 10: %w", m+1, err)
							}
						}
						return nil
					})
				})
		}
	}

	params := []struct {
		offer  string
		accept acceptance
		desc   string
	}{
		{offer: pmd, accept: mustAccept, desc: "a plain offer"},
		{offer: pmd + "; client_no_context_takeover", accept: mustAccept, desc: "client_no_context_takeover (we reset our compressor per message)"},
		{offer: pmd + "; server_no_context_takeover", accept: mayDecline, desc: "server_no_context_takeover (each echo must inflate on its own)"},
		{offer: pmd + "; client_no_context_takeover; server_no_context_takeover", accept: mayDecline, desc: "both no_context_takeover parameters"},
		{offer: pmd + "; client_max_window_bits", accept: mustAccept, desc: "client_max_window_bits without a value (the server may limit our window)"},
		{offer: pmd + "; client_max_window_bits=9", accept: mustAccept, desc: "client_max_window_bits=9 (we compress with a 512-octet window)"},
		{offer: pmd + "; server_max_window_bits=15", accept: mayDecline, desc: "server_max_window_bits=15"},
		{offer: pmd + "; server_max_window_bits=10", accept: mayDecline, desc: "server_max_window_bits=10 (the server must answer with at most 10 or decline)"},
		{offer: pmd + "; server_max_window_bits=8; client_max_window_bits=8, " + pmd + "; client_no_context_takeover, " + pmd, accept: mustAccept,
			desc: "three offers in preference order (the response must answer one of them)"},
		{offer: pmd + `; server_max_window_bits="12"`, accept: mayDecline, desc: "a quoted-string parameter value"},
	}
	for g, p := range params {
		for i, sizes := range [][]int{{16, 100, 300, kib}, {4 * kib, 16 * kib, 64 * kib}} {
			add(catCompressionParams, fmt.Sprintf("13.%d.%d", g+1, i+1),
				fmt.Sprintf("Offer %q, %s; if accepted, send 3 compressed messages of each size %v; expect valid negotiation and every echo.", p.offer, p.desc, sizes),
				negotiated(p.offer, p.accept, sizes))
		}
	}

	// 13.11: offers a server must decline (RFC 7692 section 5.1).
	declines := []struct{ offer, why string }{
		{pmd + "; foo=1", "an unknown parameter"},
		{pmd + "; server_max_window_bits=7", "server_max_window_bits below 8"},
		{pmd + "; server_max_window_bits=16", "server_max_window_bits above 15"},
		{pmd + "; server_max_window_bits", "server_max_window_bits without a value"},
		{pmd + "; client_max_window_bits=abc", "a non-numeric client_max_window_bits"},
		{pmd + "; client_no_context_takeover; client_no_context_takeover", "a repeated parameter"},
		{pmd + "; server_no_context_takeover=1", "a value on server_no_context_takeover"},
		{"x-webkit-deflate-frame", "an unknown extension"},
	}
	for i, d := range declines {
		add(catCompressionParams, fmt.Sprintf("13.11.%d", i+1),
			fmt.Sprintf("Offer %q, %s; expect the handshake to succeed without the extension, then a plain echo.", d.offer, d.why),
			mustDeclineCase(d.offer))
	}

	// 13.12: protocol errors with compression negotiated.
	kosmeBad := kosme + "\xed\xa0\x80edited"
	add(catCompressionParams, "13.12.1", "Send a compressed text message whose first fragment has RSV1 and whose continuation frame also has RSV1; expect 1002.",
		withDeflate(fails(protocolError), func(c *conn) error {
			data, err := c.pmd.compress(corpusSlice(1, 600))
			if err != nil {
				return err
			}
			c.send(oneChop, fragment(opText, false, data[:10]).withRSV(rsv1), fragment(opContinuation, true, data[10:]).withRSV(rsv1))
			return nil
		}))
	add(catCompressionParams, "13.12.2", "Send a ping with RSV1 set; expect 1002 (control frames are never compressed).",
		withDeflate(fails(protocolError), send(oneChop, pingFrame([]byte("x")).withRSV(rsv1))))
	add(catCompressionParams, "13.12.3", "Send a text message with RSV2 set; expect 1002 (permessage-deflate only defines RSV1).",
		withDeflate(fails(protocolError), send(oneChop, textFrame(helloWorld).withRSV(rsv2))))
	add(catCompressionParams, "13.12.4", "Send a compressed message that is not valid DEFLATE data (reserved block type); expect 1007 or 1002.",
		withDeflate(fails([]int{closeInvalidPayload, closeProtocolError}), send(oneChop, binaryFrame([]byte{0x06, 0x00, 0x00, 0x00}).withRSV(rsv1))))
	add(catCompressionParams, "13.12.5", "Send a compressed text message that inflates to invalid UTF-8; expect 1007.",
		withDeflate(fails(invalidPayload, closeProtocolError), func(c *conn) error {
			return c.sendMessage(opText, []byte(kosmeBad), true, 0)
		}))
	add(catCompressionParams, "13.12.6", "Send a compressed message of a few KiB that inflates to one octet over the server's limit; expect 1009.",
		func(ctx context.Context, t *Target) Result {
			return withDeflate(fails(tooBig), func(c *conn) error {
				return c.sendMessage(opBinary, make([]byte, t.maxMessage()+1), true, 0)
			})(ctx, t)
		})
	add(catCompressionParams, "13.12.7", "Send a compressed message that inflates to exactly the server's limit; expect its echo.",
		func(ctx context.Context, t *Target) Result {
			msg := make([]byte, t.maxMessage())
			return withDeflate(closes(), func(c *conn) error { return c.echoes(opBinary, [][]byte{msg}, true, 0) })(ctx, t)
		})
	add(catCompressionParams, "13.12.8", "Send an uncompressed text message (RSV1 clear) with compression negotiated; expect its echo.",
		withDeflate(closes(), send(oneChop, textFrame(helloWorld)), expectText(helloWorld)))
	add(catCompressionParams, "13.12.9", "Send a compressed empty text message (payload 0x00, RFC 7692 7.2.3.6); expect an empty echo.",
		withDeflate(closes(), send(oneChop, frame{fin: true, opcode: opText, rsv: rsv1, payload: []byte{0x00}}), expectText("")))
	add(catCompressionParams, "13.12.10", "Send a compressed text message in 3 fragments with a ping between them; expect the pong, then the echo.",
		withDeflate(closes(), func(c *conn) error {
			msg := corpusSlice(3, 2000)
			data, err := c.pmd.compress(msg)
			if err != nil {
				return err
			}
			third := len(data) / 3
			c.send(oneChop, fragment(opText, false, data[:third]).withRSV(rsv1), pingFrame([]byte("mid")),
				fragment(opContinuation, false, data[third:2*third]), fragment(opContinuation, true, data[2*third:]))
			if err := c.expectPong([]byte("mid")); err != nil {
				return err
			}
			return c.expectMessage(opText, msg)
		}))
	return cs
}

type acceptance int

const (
	mustAccept acceptance = iota // a server with compression on has no reason to decline
	mayDecline                   // RFC 7692 lets the server decline this offer
)

// openAccepted opens a connection offering offer and requires the server
// to accept permessage-deflate.
func openAccepted(ctx context.Context, t *Target, offer string) (*conn, error) {
	c, err := open(ctx, t, offer)
	if err != nil {
		return nil, err
	}
	if c.pmd == nil {
		c.close()
		return nil, fmt.Errorf("server declined %q; is compression enabled on the target?", offer)
	}
	return c, nil
}

// withDeflate is script on a connection where the plain permessage-deflate
// offer was accepted.
func withDeflate(end ending, steps ...step) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		c, err := openAccepted(ctx, t, pmd)
		if err != nil {
			return failedErr(err)
		}
		defer c.close()
		return c.play(end, steps...)
	}
}

// negotiated offers offer, checks the server's answer, then exchanges
// compressed messages of each size, text and binary alternating.
func negotiated(offer string, accept acceptance, sizes []int) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		c, err := open(ctx, t, offer)
		if err != nil {
			return failedErr(err)
		}
		defer c.close()
		agreed := "declined (allowed)"
		if c.pmd == nil {
			if accept == mustAccept {
				return failed("server declined %q; is compression enabled on the target?", offer)
			}
		} else {
			agreed = fmt.Sprintf("accepted %q", strings.Join(c.resp.Header.Values("Sec-WebSocket-Extensions"), ", "))
		}
		res := c.play(closes(), func(c *conn) error {
			n := 0
			for _, size := range sizes {
				for range 3 {
					op := []byte{opText, opBinary}[n%2]
					if err := c.echoes(op, [][]byte{corpusSlice(n, size)}, c.pmd != nil, 0); err != nil {
						return err
					}
					n++
				}
			}
			return nil
		})
		if res.Verdict != Failed {
			res.Reason = agreed + "; " + res.Reason
		}
		return res
	}
}

// mustDeclineCase offers an offer the server must decline: the handshake
// must succeed without Sec-WebSocket-Extensions (refusing the handshake is
// NON-STRICT), and messages then flow uncompressed.
func mustDeclineCase(offer string) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		req := newRequest(t)
		req.set("Sec-WebSocket-Extensions", offer)
		c, resp, err := dial(ctx, t, req, nil)
		if err != nil {
			return failedErr(err)
		}
		if c == nil {
			if resp.StatusCode == http.StatusBadRequest {
				return nonStrict("server refused the handshake with %s instead of declining the extension", resp.Status)
			}
			return failed("handshake answered %s, want 101 without the extension", resp.Status)
		}
		defer c.close()
		if err := checkUpgrade(req, resp); err != nil {
			return failedErr(err)
		}
		if ext := resp.Header.Values("Sec-WebSocket-Extensions"); len(ext) > 0 {
			return failed("server accepted %q for the offer %q, which RFC 7692 section 5.1 requires it to decline", strings.Join(ext, ", "), offer)
		}
		return c.play(closes(), send(oneChop, textFrame(helloWorld)), expectText(helloWorld))
	}
}
