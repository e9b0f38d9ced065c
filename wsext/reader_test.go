package wsext

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"
)

// recordSink is a frameSink that keeps what a frameReader hands it.
type recordSink struct {
	max      int64
	discard  bool // keep nothing: for benchmarks
	messages [][]byte
	texts    []bool
	pings    [][]byte
	pongs    int
	closed   bool
	code     int
}

func (s *recordSink) limit() int64 { return s.max }

func (s *recordSink) message(data []byte, isText bool) {
	if s.discard {
		return
	}
	s.messages = append(s.messages, bytes.Clone(data))
	s.texts = append(s.texts, isText)
}

func (s *recordSink) ping(p []byte) { s.pings = append(s.pings, bytes.Clone(p)) }
func (s *recordSink) pong([]byte)   { s.pongs++ }
func (s *recordSink) close(code int, _ []byte) {
	s.closed, s.code = true, code
}

func TestFrameReader(t *testing.T) {
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	tests := []struct {
		name     string
		deflate  bool
		in       []byte
		messages []string
		pings    int
		code     int // close code of the returned error, 0 for none
	}{
		{"one text", false, clientFrame(0x81, []byte("hello")), []string{"hello"}, 0, 0},
		{"fragments around a ping", false, cat(clientFrame(0x01, []byte("hel")), clientFrame(0x89, []byte("p")), clientFrame(0x80, []byte("lo"))), []string{"hello"}, 1, 0},
		{"UTF-8 split across fragments", false, cat(clientFrame(0x01, []byte{0xe2, 0x82}), clientFrame(0x80, []byte{0xac})), []string{"€"}, 0, 0},
		{"invalid UTF-8", false, clientFrame(0x81, []byte{0xff}), nil, 0, CloseInvalidPayload},
		{"text ends inside a rune", false, clientFrame(0x81, []byte{0xe2, 0x82}), nil, 0, CloseInvalidPayload},
		{"over the limit", false, clientFrame(0x82, make([]byte, 1025)), nil, 0, CloseMessageTooBig},
		{"compressed", true, clientFrame(0xc1, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), []string{"Hello"}, 0, 0},
		{"compressed without deflate", false, clientFrame(0xc1, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), nil, 0, CloseProtocolError},
		{"non-minimal length", false, []byte{0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4, 0, 0, 0, 0, 0}, nil, 0, CloseProtocolError},
		{"close with a 1-byte payload", false, clientFrame(0x88, []byte{3}), nil, 0, CloseProtocolError},
		{"close with 1005", false, clientFrame(0x88, []byte{0x03, 0xed}), nil, 0, CloseProtocolError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Byte by byte and whole: the reader must not care how the
			// socket cut the stream.
			for _, step := range []int{len(tc.in), 1} {
				rs := frameReader{deflate: tc.deflate}
				sink := &recordSink{max: 1024}
				in := bytes.Clone(tc.in)
				var err error
				for i := 0; i < len(in) && err == nil; i += step {
					err = rs.feed(in[i:min(i+step, len(in))], sink)
				}
				var ce *closeError
				switch {
				case tc.code == 0 && err != nil:
					t.Fatalf("step %d: %v", step, err)
				case tc.code != 0 && (!errors.As(err, &ce) || ce.code != tc.code):
					t.Fatalf("step %d: error %v, want close code %d", step, err, tc.code)
				}
				if len(sink.messages) != len(tc.messages) {
					t.Fatalf("step %d: %d messages, want %d", step, len(sink.messages), len(tc.messages))
				}
				for i, m := range tc.messages {
					if string(sink.messages[i]) != m {
						t.Fatalf("step %d: message %d = %q, want %q", step, i, sink.messages[i], m)
					}
				}
				if len(sink.pings) != tc.pings {
					t.Fatalf("step %d: %d pings, want %d", step, len(sink.pings), tc.pings)
				}
				rs.release()
			}
		})
	}
}

// FuzzReader feeds arbitrary bytes to the frame reader alone, cut at an
// arbitrary point. It must not panic; it must hand on only text that is
// valid UTF-8 and messages within the limit, also after inflating; and it
// must hand on the same messages however the stream is cut.
func FuzzReader(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(false, uint16(0), s)
		f.Add(true, uint16(3), s)
	}
	f.Fuzz(func(t *testing.T, deflate bool, cut uint16, in []byte) {
		run := func(parts ...[]byte) (*recordSink, error) {
			rs := frameReader{deflate: deflate}
			defer rs.release()
			sink := &recordSink{max: fuzzMaxMsg}
			var err error
			for _, p := range parts {
				if err = rs.feed(bytes.Clone(p), sink); err != nil {
					break
				}
			}
			return sink, err
		}
		whole, err1 := run(in)
		at := int(cut) % (len(in) + 1)
		split, err2 := run(in[:at], in[at:])
		if (err1 == nil) != (err2 == nil) || len(whole.messages) != len(split.messages) {
			t.Fatalf("cut at %d changed the outcome: %v, %d messages vs %v, %d", at, err1, len(whole.messages), err2, len(split.messages))
		}
		for i, m := range whole.messages {
			if int64(len(m)) > fuzzMaxMsg {
				t.Fatalf("message of %d bytes over the %d limit", len(m), fuzzMaxMsg)
			}
			if whole.texts[i] && !utf8.Valid(m) {
				t.Fatalf("text message is not UTF-8: %q", m)
			}
			if !bytes.Equal(m, split.messages[i]) {
				t.Fatalf("message %d differs when cut at %d", i, at)
			}
		}
	})
}
