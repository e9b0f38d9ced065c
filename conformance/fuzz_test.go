package conformance

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// FuzzReadFrame feeds the decoder that parses server output arbitrary
// bytes: it must not panic, must respect its limit, and what it decodes
// must survive a re-encode and decode unchanged.
func FuzzReadFrame(f *testing.F) {
	for _, s := range []string{
		"810548656c6c6f", "818537fa213d7f9f4d5158", "010348656c", "80026c6f",
		"827e0100", "827f8000000000000001ff", "827f0000000000000005", "f300", "88020000",
	} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Add(encode(textFrame("Hello"), closeFrame(1000, "bye")))
	f.Fuzz(func(t *testing.T, wire []byte) {
		const limit = 1 << 16
		r := bytes.NewReader(wire)
		for {
			fr, err := readFrame(r, limit)
			if err != nil {
				return
			}
			if len(fr.payload) > limit {
				t.Fatalf("payload of %d bytes over the limit", len(fr.payload))
			}
			again, err := readFrame(bytes.NewReader(appendFrame(nil, fr)), limit)
			if err != nil {
				t.Fatalf("re-decoding %v: %v", fr, err)
			}
			if !frameEqual(again, fr) {
				t.Fatalf("re-encode changed %v into %v", fr, again)
			}
			if fr.opcode == opClose {
				closeEvent(fr.payload) // must not panic on any payload
			}
		}
	})
}

// FuzzNegotiate feeds arbitrary Sec-WebSocket-Extensions responses to the
// parser and to the RFC 7692 checks: no panics, and an accepted response
// always yields window sizes in range.
func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		`permessage-deflate; server_max_window_bits="10"`, "permessage-deflate; client_max_window_bits=8",
		"a, b; c=d", "permessage-deflate;;", `x; y="\"`,
	} {
		f.Add(s)
	}
	offers, err := parseExtensions([]string{"permessage-deflate; client_max_window_bits; server_max_window_bits=12, permessage-deflate"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, response string) {
		exts, err := parseExtensions([]string{response})
		if err == nil {
			// What parsed must parse again the same way once rendered.
			again, err := parseExtensions([]string{renderQuoted(exts)})
			if err != nil || render(again) != render(exts) {
				t.Fatalf("%q rendered as %q reparsed to %v, %v", response, renderQuoted(exts), again, err)
			}
		}
		d, err := negotiate(offers, []string{response})
		if err == nil && d != nil {
			if d.serverBits < 8 || d.serverBits > 15 || d.clientBits < 8 || d.clientBits > 15 {
				t.Fatalf("%q negotiated window bits %d/%d", response, d.serverBits, d.clientBits)
			}
		}
	})
}

func renderQuoted(exts []extension) string {
	var parts []string
	for _, e := range exts {
		s := e.name
		for _, p := range e.params {
			s += "; " + p.name
			if p.hasValue {
				v := p.value
				if _, rest, ok := scanToken(v); !ok || rest != "" || v != strings.TrimSpace(v) {
					v = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
				}
				s += "=" + v
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}
