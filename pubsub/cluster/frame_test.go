package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		want frame
	}{
		{"subscribe", appendSub(nil, opSubscribe, "room"), frame{op: opSubscribe, channel: []byte("room")}},
		{"unsubscribe", appendSub(nil, opUnsubscribe, "room"), frame{op: opUnsubscribe, channel: []byte("room")}},
		{"empty channel", appendSub(nil, opSubscribe, ""), frame{op: opSubscribe, channel: []byte{}}},
		{"text", appendPublish(nil, "a", []byte("héllo"), true), frame{op: opPublish, text: true, channel: []byte("a"), data: []byte("héllo")}},
		{"binary", appendPublish(nil, "b:c", []byte{0, 0xff}, false), frame{op: opPublish, channel: []byte("b:c"), data: []byte{0, 0xff}}},
		{"empty message", appendPublish(nil, "x", nil, false), frame{op: opPublish, channel: []byte("x"), data: []byte{}}},
		{"long channel", appendPublish(nil, strings.Repeat("c", MaxChannel), []byte("m"), true),
			frame{op: opPublish, text: true, channel: bytes.Repeat([]byte("c"), MaxChannel), data: []byte("m")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, f, err := readFrame(bufio.NewReader(bytes.NewReader(tt.raw)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, tt.raw) {
				t.Errorf("raw %q, want %q", raw, tt.raw)
			}
			if f.op != tt.want.op || f.text != tt.want.text || !bytes.Equal(f.channel, tt.want.channel) || !bytes.Equal(f.data, tt.want.data) {
				t.Errorf("decoded %+v, want %+v", f, tt.want)
			}
		})
	}
}

func TestFrameErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"zero length", []byte{0, 0, 0, 0}, errFrame},
		{"length too big", []byte{0xff, 0xff, 0xff, 0xff, 'S'}, errFrame},
		{"unknown op", []byte{0, 0, 0, 1, 'X'}, errFrame},
		{"short publish", []byte{0, 0, 0, 3, 'P', 0, 0}, errFrame},
		{"unknown flag", []byte{0, 0, 0, 4, 'P', 2, 0, 0}, errFrame},
		{"channel past the end", []byte{0, 0, 0, 5, 'P', 0, 0, 2, 'a'}, errFrame},
		{"truncated body", []byte{0, 0, 0, 5, 'S', 'a'}, io.ErrUnexpectedEOF},
		{"truncated length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"nothing", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readFrame(bufio.NewReader(bytes.NewReader(tt.raw)), nil)
			if !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzReadFrame feeds the relay's decoder arbitrary streams: it must never
// panic, and every frame it accepts must encode back to the same bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add(appendSub(nil, opSubscribe, "room"))
	f.Add(appendPublish(appendSub(nil, opUnsubscribe, "x"), "chan", []byte("data"), true))
	f.Add(appendPublish(nil, "", nil, false))
	f.Add([]byte{0, 0, 0, 4, 'P', 1, 0xff, 0xff})
	f.Add([]byte{0x04, 0, 0, 0, 'S'})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for range 1000 {
			raw, fr, err := readFrame(br, buf)
			if err != nil {
				return
			}
			var again []byte
			switch fr.op {
			case opSubscribe, opUnsubscribe:
				again = appendSub(nil, fr.op, string(fr.channel))
			case opPublish:
				again = appendPublish(nil, string(fr.channel), fr.data, fr.text)
			default:
				t.Fatalf("accepted op %#x", fr.op)
			}
			if !bytes.Equal(again, raw) {
				t.Fatalf("frame %q re-encodes as %q", raw, again)
			}
			buf = raw[:0]
		}
	})
}
