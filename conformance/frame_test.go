package conformance

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// RFC 6455 section 5.7 examples, plus length-encoding boundaries.
func TestReadFrameExamples(t *testing.T) {
	tests := []struct {
		name    string
		wire    string // hex
		want    frame
		wantErr error
	}{
		{name: "unmasked text", wire: "810548656c6c6f",
			want: frame{fin: true, opcode: opText, payload: []byte("Hello")}},
		{name: "masked text", wire: "818537fa213d7f9f4d5158",
			want: frame{fin: true, opcode: opText, masked: true, mask: [4]byte{0x37, 0xfa, 0x21, 0x3d}, payload: []byte("Hello")}},
		{name: "first fragment", wire: "010348656c",
			want: frame{opcode: opText, payload: []byte("Hel")}},
		{name: "last fragment", wire: "80026c6f",
			want: frame{fin: true, opcode: opContinuation, payload: []byte("lo")}},
		{name: "unmasked ping", wire: "890548656c6c6f",
			want: frame{fin: true, opcode: opPing, payload: []byte("Hello")}},
		{name: "rsv bits and reserved opcode", wire: "f300",
			want: frame{fin: true, rsv: 7, opcode: 3, payload: []byte{}}},
		{name: "16-bit length", wire: "827e0100" + strings.Repeat("ab", 256),
			want: frame{fin: true, opcode: opBinary, payload: bytes.Repeat([]byte{0xab}, 256)}},
		{name: "64-bit length", wire: "827f0000000000010000" + strings.Repeat("cd", 65536),
			want: frame{fin: true, opcode: opBinary, payload: bytes.Repeat([]byte{0xcd}, 65536)}},
		{name: "64-bit length with MSB set", wire: "827f8000000000000001ff", wantErr: errBadLength},
		{name: "over the limit", wire: "827f0000010000000000", wantErr: errFrameTooLarge},
		{name: "truncated header", wire: "827e01", wantErr: errShortFrame},
		{name: "truncated payload", wire: "8105486565", wantErr: errShortFrame},
		{name: "truncated mask", wire: "818537fa", wantErr: errShortFrame},
		{name: "empty input", wire: "", wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire, err := hex.DecodeString(tt.wire)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readFrame(bytes.NewReader(wire), 1<<20)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("readFrame error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("readFrame: %v", err)
			}
			if !frameEqual(got, tt.want) {
				t.Errorf("readFrame = %v %q, want %v %q", got, got.payload, tt.want, tt.want.payload)
			}
			if re := appendFrame(nil, got); !bytes.Equal(re, wire) {
				t.Errorf("appendFrame(readFrame(x)) = %x, want %x", re, wire)
			}
		})
	}
}

func frameEqual(a, b frame) bool {
	return a.fin == b.fin && a.rsv == b.rsv && a.opcode == b.opcode && a.masked == b.masked &&
		(!a.masked || a.mask == b.mask) && bytes.Equal(a.payload, b.payload)
}

// TestEncodeRoundTrip checks that encode masks client frames (unless bare)
// and that readFrame undoes it, for payloads around each length encoding.
func TestEncodeRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		for _, bare := range []bool{false, true} {
			f := frame{fin: n%2 == 0, rsv: byte(n % 8), opcode: opBinary, payload: bytes.Repeat([]byte{byte(n)}, n), bare: bare}
			wire := encode(f, pingFrame([]byte("after")))
			r := bufio.NewReader(bytes.NewReader(wire))
			got, err := readFrame(r, -1)
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if got.masked == bare || got.fin != f.fin || got.rsv != f.rsv || !bytes.Equal(got.payload, f.payload) {
				t.Errorf("n=%d bare=%t: got %v", n, bare, got)
			}
			if next, err := readFrame(r, -1); err != nil || next.opcode != opPing || string(next.payload) != "after" {
				t.Errorf("n=%d: second frame %v, %v", n, next, err)
			}
			if _, err := readFrame(r, -1); err != io.EOF {
				t.Errorf("n=%d: after the last frame: %v, want io.EOF", n, err)
			}
		}
	}
}

func TestCloseEvent(t *testing.T) {
	tests := []struct {
		payload []byte
		code    int
		bad     bool
	}{
		{payload: nil, code: 0},
		{payload: closePayload(1000, "bye"), code: 1000},
		{payload: closePayload(4999, ""), code: 4999},
		{payload: closePayload(1014, ""), code: 1014},
		{payload: []byte{0x03}, bad: true},
		{payload: closePayload(1005, ""), code: 1005, bad: true},
		{payload: closePayload(1000, "\xff"), code: 1000, bad: true},
		{payload: closePayload(5000, ""), code: 5000, bad: true},
	}
	for _, tt := range tests {
		e, err := closeEvent(tt.payload)
		var v *violation
		if tt.bad != errors.As(err, &v) || e.code != tt.code {
			t.Errorf("closeEvent(%x) = %v, %v; want code %d, violation %t", tt.payload, e, err, tt.code, tt.bad)
		}
	}
}

func TestCasesWellFormed(t *testing.T) {
	seen := map[string]bool{}
	cases := Cases()
	for _, c := range cases {
		if c.ID == "" || c.Category == "" || c.Description == "" || c.Run == nil {
			t.Errorf("incomplete case %+v", c)
		}
		if seen[c.ID] {
			t.Errorf("duplicate case ID %s", c.ID)
		}
		seen[c.ID] = true
	}
	if len(cases) < 150 {
		t.Errorf("%d cases, want at least 150", len(cases))
	}
}

func BenchmarkReadFrame(b *testing.B) {
	wire := encode(binaryFrame(bytes.Repeat([]byte{1}, 4096)))
	r := bytes.NewReader(wire)
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		r.Reset(wire)
		if _, err := readFrame(r, -1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	f := binaryFrame(bytes.Repeat([]byte{1}, 4096))
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		encode(f)
	}
}
