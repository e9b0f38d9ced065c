package conformance

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseExtensions(t *testing.T) {
	tests := []struct {
		in   string
		want string // re-rendered; "error" for a parse error
	}{
		{"permessage-deflate", "permessage-deflate"},
		{"permessage-deflate; client_max_window_bits", "permessage-deflate;client_max_window_bits"},
		{"permessage-deflate;server_max_window_bits=10 ; client_no_context_takeover", "permessage-deflate;server_max_window_bits=10;client_no_context_takeover"},
		{`permessage-deflate; server_max_window_bits="10"`, "permessage-deflate;server_max_window_bits=10"},
		{"a, b; x=1, c", "a|b;x=1|c"},
		{"", "error"},
		{"permessage-deflate;", "error"},
		{"permessage-deflate; x=", "error"},
		{`permessage-deflate; x="unterminated`, "error"},
		{"a b", "error"},
	}
	for _, tt := range tests {
		exts, err := parseExtensions([]string{tt.in})
		got := "error"
		if err == nil {
			got = render(exts)
		}
		if got != tt.want {
			t.Errorf("parseExtensions(%q) = %s (%v), want %s", tt.in, got, err, tt.want)
		}
	}
}

func render(exts []extension) string {
	var parts []string
	for _, e := range exts {
		s := e.name
		for _, p := range e.params {
			s += ";" + p.name
			if p.hasValue {
				s += "=" + p.value
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "|")
}

// params are the comparable fields of a deflate.
type params struct {
	serverNoContext, clientNoContext bool
	serverBits, clientBits, offer    int
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		offer, response string
		ok              bool
		want            params // the negotiated parameters when ok
	}{
		{offer: "permessage-deflate", response: "", ok: true},
		{offer: "permessage-deflate", response: "permessage-deflate", ok: true, want: params{serverBits: 15, clientBits: 15}},
		{offer: "permessage-deflate", response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover", ok: true,
			want: params{serverNoContext: true, clientNoContext: true, serverBits: 15, clientBits: 15}},
		{offer: "permessage-deflate", response: "permessage-deflate; server_max_window_bits=10", ok: true, want: params{serverBits: 10, clientBits: 15}},
		{offer: "permessage-deflate", response: "permessage-deflate; client_max_window_bits=10"},
		{offer: "permessage-deflate; client_max_window_bits", response: "permessage-deflate; client_max_window_bits=10", ok: true, want: params{serverBits: 15, clientBits: 10}},
		{offer: "permessage-deflate; client_max_window_bits=9", response: "permessage-deflate", ok: true, want: params{serverBits: 15, clientBits: 9}},
		{offer: "permessage-deflate; client_max_window_bits=9", response: "permessage-deflate; client_max_window_bits=10"},
		{offer: "permessage-deflate; client_no_context_takeover", response: "permessage-deflate", ok: true, want: params{clientNoContext: true, serverBits: 15, clientBits: 15}},
		{offer: "permessage-deflate; server_no_context_takeover", response: "permessage-deflate"},
		{offer: "permessage-deflate; server_max_window_bits=10", response: "permessage-deflate"},
		{offer: "permessage-deflate; server_max_window_bits=10", response: "permessage-deflate; server_max_window_bits=11"},
		{offer: "permessage-deflate; server_max_window_bits=10", response: "permessage-deflate; server_max_window_bits=9", ok: true, want: params{serverBits: 9, clientBits: 15}},
		{offer: "permessage-deflate", response: "permessage-deflate; server_max_window_bits=16"},
		{offer: "permessage-deflate", response: "permessage-deflate; server_max_window_bits=08"},
		{offer: "permessage-deflate", response: "permessage-deflate; server_max_window_bits"},
		{offer: "permessage-deflate", response: "permessage-deflate; server_no_context_takeover=1"},
		{offer: "permessage-deflate", response: "permessage-deflate; server_no_context_takeover; server_no_context_takeover"},
		{offer: "permessage-deflate", response: "permessage-deflate; foo"},
		{offer: "permessage-deflate", response: "permessage-deflate, permessage-deflate"},
		{offer: "permessage-deflate", response: "x-webkit-deflate-frame"},
		{offer: "permessage-deflate; server_max_window_bits=8, permessage-deflate", response: "permessage-deflate", ok: true, want: params{serverBits: 15, clientBits: 15, offer: 1}},
	}
	for _, tt := range tests {
		offers, err := parseExtensions([]string{tt.offer})
		if err != nil {
			t.Fatal(err)
		}
		var resp []string
		if tt.response != "" {
			resp = []string{tt.response}
		}
		d, err := negotiate(offers, resp)
		if (err == nil) != tt.ok {
			t.Errorf("negotiate(%q, %q) error = %v, want ok %t", tt.offer, tt.response, err, tt.ok)
			continue
		}
		if !tt.ok || tt.response == "" {
			if d != nil {
				t.Errorf("negotiate(%q, %q) = %+v, want nil", tt.offer, tt.response, d)
			}
			continue
		}
		got := params{serverNoContext: d.serverNoContext, clientNoContext: d.clientNoContext, serverBits: d.serverBits, clientBits: d.clientBits, offer: d.offer}
		if got != tt.want {
			t.Errorf("negotiate(%q, %q) = %+v, want %+v", tt.offer, tt.response, got, tt.want)
		}
	}
}

// TestDeflateRoundTrip checks our compressor against our decompressor for
// each context and window mode, the way a peer with the same parameters
// would read it.
func TestDeflateRoundTrip(t *testing.T) {
	msgs := [][]byte{corpusSlice(0, 3000), corpusSlice(0, 3000), []byte("x"), corpusSlice(5, 40000), nil}
	for _, noContext := range []bool{false, true} {
		for _, bits := range []int{8, 9, 12, 15} {
			tx := &deflate{clientNoContext: noContext, clientBits: bits}
			rx := &deflate{serverNoContext: noContext, serverBits: 15}
			var sizes []int
			for i, m := range msgs {
				c, err := tx.compress(m)
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(c))
				got, err := rx.decompress(c, 1<<20)
				if err != nil {
					t.Fatalf("noContext=%t bits=%d message %d: %v", noContext, bits, i, err)
				}
				if !bytes.Equal(got, m) {
					t.Fatalf("noContext=%t bits=%d message %d: round trip changed the message", noContext, bits, i)
				}
			}
			// With context takeover the repeated message is nearly free.
			if !noContext && bits == 15 && sizes[1] > sizes[0]/10 {
				t.Errorf("repeated message compressed to %d bytes after %d: context not kept", sizes[1], sizes[0])
			}
		}
	}
	big, _ := (&deflate{clientBits: 15}).compress(make([]byte, 1000))
	if _, err := (&deflate{serverBits: 15}).decompress(big, 999); err == nil {
		t.Error("decompress ignored its limit")
	}
}
