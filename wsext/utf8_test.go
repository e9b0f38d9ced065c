package wsext

import (
	"testing"
	"unicode/utf8"
)

func TestUTF8StateMatchesStdlib(t *testing.T) {
	cases := []string{
		"", "hello", "κόσμε", "\xf0\x90\x80\x80", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80",
		"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", "\xef\xbf\xbf", "abcdefgh\x80",
		"0123456789abcdef\xe2\x82\xac", "\xe2\x82", "\xf0\x9f\x98",
	}
	for _, c := range cases {
		b := []byte(c)
		// Feed at every split point, as fragments would arrive.
		for split := 0; split <= len(b); split++ {
			s := utf8Accept.next(b[:split])
			if s != utf8Reject {
				s = s.next(b[split:])
			}
			if got, want := s == utf8Accept, utf8.Valid(b); got != want {
				t.Errorf("%q split at %d: valid=%v, stdlib says %v", c, split, got, want)
			}
		}
	}
}

func FuzzUTF8State(f *testing.F) {
	f.Add([]byte("κόσμε"), 3)
	f.Add([]byte("\xed\xa0\x80"), 1)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		if split < 0 || split > len(b) {
			split = len(b) / 2
		}
		s := utf8Accept.next(b[:split])
		if s != utf8Reject {
			s = s.next(b[split:])
		}
		if got, want := s == utf8Accept, utf8.Valid(b); got != want {
			t.Fatalf("%q: valid=%v, stdlib says %v", b, got, want)
		}
		// A rejection must be final: no suffix makes invalid input valid.
		if utf8Accept.next(b[:split]) == utf8Reject && utf8.Valid(b) {
			t.Fatalf("%q: prefix rejected but whole is valid", b)
		}
	})
}
