package redis

import (
	"encoding/binary"
	"strconv"
	"testing"
	"unicode/utf8"
)

// FuzzParsePositioned feeds the parser of live history messages, which
// come from any process on the Redis (another program's included), bytes
// of every shape: it must never panic, and what it accepts must be what
// publishArgs writes.
func FuzzParsePositioned(f *testing.F) {
	e := &Engine{opts: Options{Prefix: DefaultPrefix, HistorySize: 10}}
	for _, c := range []struct {
		data   string
		isText bool
		origin uint64
	}{{"hello", true, 7}, {"\x00\xff", false, 0}, {"a:b:c", true, 1 << 63}, {"", true, 1}} {
		_, args := e.publishArgs("ch", []byte(c.data), c.isText, c.origin)
		head := args[4].([]byte)
		f.Add(string(head) + "42:5f0c2a9d31e4:" + c.data)
	}
	f.Add("")
	f.Add("\x02\x00short")
	f.Fuzz(func(t *testing.T, p string) {
		m, ok := parsePositioned(p)
		if !ok {
			return
		}
		if m.isText && !utf8.ValidString(m.data) {
			t.Fatalf("accepted text that is not UTF-8: %q", m.data)
		}
		// Written again, the message reads the same.
		head := []byte(p[:histHeadSize])
		binary.BigEndian.PutUint64(head[2+originSize:], m.origin)
		again, ok := parsePositioned(string(head) + strconv.FormatUint(m.offset, 10) + ":" + m.epoch + ":" + m.data)
		if !ok || again != m {
			t.Fatalf("%q read as %+v, written again as %+v (%v)", p, m, again, ok)
		}
	})
}
