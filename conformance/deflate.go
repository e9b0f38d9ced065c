package conformance

import (
	"bytes"
	stdflate "compress/flate"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/flate"
)

// extension is one element of a Sec-WebSocket-Extensions header.
type extension struct {
	name   string
	params []extParam
}

type extParam struct {
	name     string
	value    string
	hasValue bool
}

func (e extension) param(name string) (extParam, bool) {
	for _, p := range e.params {
		if p.name == name {
			return p, true
		}
	}
	return extParam{}, false
}

// parseExtensions parses Sec-WebSocket-Extensions values (RFC 6455 section
// 9.1): comma-separated extensions, each a token followed by
// semicolon-separated parameters, token or quoted-string valued.
func parseExtensions(values []string) ([]extension, error) {
	var exts []extension
	for _, v := range values {
		s := v
		for {
			var e extension
			var ok bool
			if e.name, s, ok = scanToken(s); !ok {
				return nil, fmt.Errorf("extension name missing in %q", v)
			}
			for {
				s = skipSpace(s)
				if s == "" || s[0] != ';' {
					break
				}
				var p extParam
				if p.name, s, ok = scanToken(s[1:]); !ok {
					return nil, fmt.Errorf("parameter name missing in %q", v)
				}
				if s = skipSpace(s); s != "" && s[0] == '=' {
					p.hasValue = true
					s = skipSpace(s[1:])
					if s != "" && s[0] == '"' {
						if p.value, s, ok = scanQuoted(s); !ok {
							return nil, fmt.Errorf("bad quoted string in %q", v)
						}
					} else if p.value, s, ok = scanToken(s); !ok {
						return nil, fmt.Errorf("parameter %s has no value in %q", p.name, v)
					}
				}
				e.params = append(e.params, p)
			}
			exts = append(exts, e)
			if s == "" {
				break
			}
			if s[0] != ',' {
				return nil, fmt.Errorf("unexpected %q in %q", s, v)
			}
			s = s[1:]
		}
	}
	return exts, nil
}

func skipSpace(s string) string { return strings.TrimLeft(s, " \t") }

// scanToken reads an RFC 7230 token after optional whitespace.
func scanToken(s string) (tok, rest string, ok bool) {
	s = skipSpace(s)
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:], i > 0
}

func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7F {
		return false
	}
	return !strings.ContainsRune(`()<>@,;:\"/[]?={}`, rune(c))
}

func scanQuoted(s string) (val, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			i++
			if i == len(s) {
				return "", "", false
			}
		}
		b.WriteByte(s[i])
	}
	return "", "", false
}

// deflate is the client side of a negotiated permessage-deflate (RFC 7692).
type deflate struct {
	serverNoContext bool // server resets its compressor per message
	clientNoContext bool // we reset ours per message
	serverBits      int  // server's LZ77 window, 8-15
	clientBits      int  // our LZ77 window, 8-15
	offer           int  // index of the offer the server accepted

	w    *flate.Writer
	wbuf bytes.Buffer
	dict []byte // the server's sliding window under context takeover
}

// negotiate checks the server's Sec-WebSocket-Extensions response against
// the offers we made (each a permessage-deflate element) as RFC 7692
// sections 5 and 7.1 require, and returns the agreed parameters, or nil
// when the server declined every offer.
func negotiate(offered []extension, response []string) (*deflate, error) {
	exts, err := parseExtensions(response)
	if err != nil {
		return nil, fmt.Errorf("Sec-WebSocket-Extensions response: %w", err)
	}
	switch {
	case len(exts) == 0:
		return nil, nil
	case len(exts) > 1:
		return nil, fmt.Errorf("server accepted %d extensions %q, want at most one", len(exts), response)
	case exts[0].name != "permessage-deflate":
		return nil, fmt.Errorf("server accepted extension %q, which was not offered", exts[0].name)
	}
	resp := exts[0]
	d := &deflate{serverBits: 15, clientBits: 15}
	seen := map[string]bool{}
	for _, p := range resp.params {
		if seen[p.name] {
			return nil, fmt.Errorf("response repeats parameter %s", p.name)
		}
		seen[p.name] = true
		switch p.name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if p.hasValue {
				return nil, fmt.Errorf("response gives %s a value", p.name)
			}
			if p.name == "server_no_context_takeover" {
				d.serverNoContext = true
			} else {
				d.clientNoContext = true
			}
		case "server_max_window_bits", "client_max_window_bits":
			bits, ok := windowBits(p)
			if !ok {
				return nil, fmt.Errorf("response has invalid %s=%q", p.name, p.value)
			}
			if p.name == "server_max_window_bits" {
				d.serverBits = bits
			} else {
				d.clientBits = bits
			}
		default:
			return nil, fmt.Errorf("response has unknown parameter %q", p.name)
		}
	}
	var why []string
	for i, o := range offered {
		if err := accepts(o, resp); err != nil {
			why = append(why, err.Error())
			continue
		}
		d.offer = i
		// Offering these makes them promises of ours whatever the answer
		// (RFC 7692 sections 7.1.1.2 and 7.1.2.2).
		if _, ok := o.param("client_no_context_takeover"); ok {
			d.clientNoContext = true
		}
		if p, ok := o.param("client_max_window_bits"); ok && p.hasValue {
			if bits, ok := windowBits(p); ok {
				d.clientBits = min(d.clientBits, bits)
			}
		}
		return d, nil
	}
	return nil, fmt.Errorf("response %q answers none of our offers: %s", response, strings.Join(why, "; "))
}

// windowBits returns a max_window_bits value, which must be 8 to 15.
func windowBits(p extParam) (int, bool) {
	if !p.hasValue || len(p.value) > 2 {
		return 0, false
	}
	n, err := strconv.Atoi(p.value)
	if err != nil || n < 8 || n > 15 || p.value[0] == '0' {
		return 0, false
	}
	return n, true
}

// accepts reports why resp is not a valid acceptance of offer, or nil.
func accepts(offer, resp extension) error {
	if _, ok := offer.param("server_no_context_takeover"); ok {
		if _, ok := resp.param("server_no_context_takeover"); !ok {
			return errors.New("server_no_context_takeover offered but missing from the response (RFC 7692 7.1.1.1)")
		}
	}
	if op, ok := offer.param("server_max_window_bits"); ok {
		rp, ok := resp.param("server_max_window_bits")
		if !ok {
			return errors.New("server_max_window_bits offered but missing from the response (RFC 7692 7.1.2.1)")
		}
		ob, _ := windowBits(op)
		if rb, _ := windowBits(rp); rb > ob {
			return fmt.Errorf("server_max_window_bits=%d answers an offer of %d (RFC 7692 7.1.2.1)", rb, ob)
		}
	}
	if rp, ok := resp.param("client_max_window_bits"); ok {
		op, ok := offer.param("client_max_window_bits")
		if !ok {
			return errors.New("client_max_window_bits in the response but not offered (RFC 7692 7.1.2.2)")
		}
		if op.hasValue {
			ob, _ := windowBits(op)
			if rb, _ := windowBits(rp); rb > ob {
				return fmt.Errorf("client_max_window_bits=%d answers an offer of %d", rb, ob)
			}
		}
	}
	return nil
}

// deflateTail is the empty stored block a sender strips from the end of each
// message (RFC 7692 section 7.2.1), followed by a final empty block so the
// inflater reports io.EOF instead of an unexpected end.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// compress returns p as the payload of a compressed message, sharing the
// LZ77 window with earlier messages unless client_no_context_takeover was
// agreed.
func (d *deflate) compress(p []byte) ([]byte, error) {
	d.wbuf.Reset()
	if d.w == nil || d.clientNoContext {
		var err error
		if d.clientBits < 15 {
			d.w, err = flate.NewWriterWindow(&d.wbuf, 1<<d.clientBits)
		} else {
			d.w, err = flate.NewWriter(&d.wbuf, flate.DefaultCompression)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := d.w.Write(p); err != nil {
		return nil, err
	}
	if err := d.w.Flush(); err != nil {
		return nil, err
	}
	out := d.wbuf.Bytes()
	if !bytes.HasSuffix(out, deflateTail[:4]) {
		return nil, errors.New("flush did not end in an empty stored block")
	}
	return bytes.Clone(out[:len(out)-4]), nil
}

// decompress inflates a compressed message of at most limit bytes. The
// standard library's inflater is used on purpose: a different
// implementation from the compressor's.
func (d *deflate) decompress(p []byte, limit int64) ([]byte, error) {
	if d == nil {
		return nil, errors.New("RSV1 set but permessage-deflate was not negotiated")
	}
	src := io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTail))
	var r io.ReadCloser
	if d.serverNoContext || d.dict == nil {
		r = stdflate.NewReader(src)
	} else {
		r = stdflate.NewReaderDict(src, d.dict)
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("inflates to more than %d bytes", limit)
	}
	if !d.serverNoContext {
		d.dict = append(d.dict, out...)
		if over := len(d.dict) - 1<<d.serverBits; over > 0 {
			d.dict = d.dict[over:]
		}
	}
	return out, nil
}
