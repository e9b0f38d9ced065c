package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"strconv"
	"strings"
	"testing"
)

// frameEqual compares decoded frames, nil and empty slices alike.
func frameEqual(a, b frame) bool {
	return a.op == b.op && a.text == b.text && a.recovered == b.recovered && a.more == b.more &&
		a.id == b.id && a.offset == b.offset && a.origin == b.origin && a.count == b.count &&
		bytes.Equal(a.channel, b.channel) && bytes.Equal(a.epoch, b.epoch) &&
		bytes.Equal(a.client, b.client) && bytes.Equal(a.data, b.data)
}

// encodeFrame encodes a decoded frame again, with the encoder of its op.
func encodeFrame(t *testing.T, f frame) []byte {
	t.Helper()
	switch f.op {
	case opSubscribe, opUnsubscribe:
		return appendSub(nil, f.op, string(f.channel))
	case opPublish:
		return appendPublish(nil, string(f.channel), f.data, f.text)
	case opPublishHistory:
		return appendPublishHistory(nil, f.id, f.origin, string(f.channel), f.data, f.text)
	case opAck:
		return appendAck(nil, f.id, f.offset, string(f.epoch))
	case opPositioned:
		return appendPositioned(nil, f.offset, f.origin, string(f.epoch), string(f.channel), f.data, f.text)
	case opHistoryRequest:
		return appendHistoryRequest(nil, f.id, f.offset, string(f.epoch), string(f.channel))
	case opHistoryAnswer:
		return appendHistoryAnswer(nil, f.id, f.offset, string(f.epoch), f.recovered, f.count)
	case opHistoryEntry:
		return appendHistoryEntry(nil, f.id, f.offset, f.data, f.text)
	case opJoin:
		return appendJoin(nil, string(f.channel), string(f.client), string(f.data))
	case opLeave:
		return appendLeave(nil, string(f.channel), string(f.client))
	case opPresenceRequest:
		return appendPresenceRequest(nil, f.id, string(f.channel))
	case opPresenceAnswer:
		var entries []byte
		for client, info := range presenceEntries(f.data) {
			entries = appendPresenceEntry(entries, string(client), string(info))
		}
		return appendPresenceFrame(nil, f.id, f.more, entries)
	}
	t.Fatalf("accepted op %#x", f.op)
	return nil
}

func TestFrameRoundTrip(t *testing.T) {
	entries := appendPresenceEntry(appendPresenceEntry(nil, "c1", `{"a":1}`), "c2", "")
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
		{"publish with history", appendPublishHistory(nil, 7, 1<<60, "ch", []byte("m"), true),
			frame{op: opPublishHistory, id: 7, origin: 1 << 60, text: true, channel: []byte("ch"), data: []byte("m")}},
		{"publish with history, binary and empty", appendPublishHistory(nil, 0, 0, "", nil, false),
			frame{op: opPublishHistory}},
		{"ack", appendAck(nil, 1<<32-1, 42, "5f0c2a9d31e4"),
			frame{op: opAck, id: 1<<32 - 1, offset: 42, epoch: []byte("5f0c2a9d31e4")}},
		{"ack without history", appendAck(nil, 3, 0, ""), frame{op: opAck, id: 3}},
		{"positioned", appendPositioned(nil, 9, 5, "ep", "room", []byte{1, 2}, false),
			frame{op: opPositioned, offset: 9, origin: 5, epoch: []byte("ep"), channel: []byte("room"), data: []byte{1, 2}}},
		{"positioned text, long names", appendPositioned(nil, 1, 0, strings.Repeat("e", MaxChannel), strings.Repeat("c", MaxChannel), []byte("t"), true),
			frame{op: opPositioned, offset: 1, text: true, epoch: bytes.Repeat([]byte("e"), MaxChannel), channel: bytes.Repeat([]byte("c"), MaxChannel), data: []byte("t")}},
		{"history request", appendHistoryRequest(nil, 4, 100, "ep", "room"),
			frame{op: opHistoryRequest, id: 4, offset: 100, epoch: []byte("ep"), channel: []byte("room")}},
		{"history request for everything", appendHistoryRequest(nil, 4, 0, "", "room"),
			frame{op: opHistoryRequest, id: 4, channel: []byte("room")}},
		{"history answer", appendHistoryAnswer(nil, 4, 120, "ep", true, 20),
			frame{op: opHistoryAnswer, id: 4, offset: 120, epoch: []byte("ep"), recovered: true, count: 20}},
		{"history answer not recovered", appendHistoryAnswer(nil, 4, 0, "", false, 0),
			frame{op: opHistoryAnswer, id: 4}},
		{"history entry", appendHistoryEntry(nil, 4, 101, []byte("m"), true),
			frame{op: opHistoryEntry, id: 4, offset: 101, text: true, data: []byte("m")}},
		{"join", appendJoin(nil, "room", "client-1", `{"user":"ann"}`),
			frame{op: opJoin, channel: []byte("room"), client: []byte("client-1"), data: []byte(`{"user":"ann"}`)}},
		{"join without info", appendJoin(nil, "room", "c", ""), frame{op: opJoin, channel: []byte("room"), client: []byte("c")}},
		{"leave", appendLeave(nil, "room", "client-1"), frame{op: opLeave, channel: []byte("room"), client: []byte("client-1")}},
		{"presence request", appendPresenceRequest(nil, 8, "room"), frame{op: opPresenceRequest, id: 8, channel: []byte("room")}},
		{"presence answer", appendPresenceFrame(nil, 8, true, entries), frame{op: opPresenceAnswer, id: 8, more: true, data: entries}},
		{"empty presence answer", appendPresenceFrame(nil, 8, false, nil), frame{op: opPresenceAnswer, id: 8}},
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
			if !frameEqual(f, tt.want) {
				t.Errorf("decoded %+v, want %+v", f, tt.want)
			}
		})
	}
}

// A presence answer of many entries is several frames, each marked but the
// last, which together hold every entry.
func TestPresenceAnswerChunks(t *testing.T) {
	want := make(map[string]string)
	for i := range 5000 {
		want["client-"+strconv.Itoa(i)] = `{"n":` + strconv.Itoa(i) + `}`
	}
	raw := appendPresenceAnswer(nil, 9, maps.All(want))
	br := bufio.NewReader(bytes.NewReader(raw))
	got := make(map[string]string)
	frames := 0
	for more := true; more; {
		fr, f, err := readFrame(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		frames++
		if f.op != opPresenceAnswer || f.id != 9 {
			t.Fatalf("frame %+v", f)
		}
		if len(fr) > lenSize+presenceAnswerHeader+presenceChunk+presenceEntryHeader+2*MaxChannel {
			t.Errorf("a frame of %d bytes", len(fr))
		}
		for client, info := range presenceEntries(f.data) {
			got[string(client)] = string(info)
		}
		more = f.more
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("bytes after the last frame: %v", err)
	}
	if frames < 2 {
		t.Errorf("%d frames for %d bytes of entries", frames, len(raw))
	}
	if !maps.Equal(got, want) {
		t.Errorf("%d entries, want %d", len(got), len(want))
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
		{"short publish with history", []byte{0, 0, 0, 5, 'H', 0, 0, 0, 1}, errFrame},
		{"publish with history, unknown flag", []byte{0, 0, 0, 16, 'H', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0}, errFrame},
		{"short ack", []byte{0, 0, 0, 9, 'K', 0, 0, 0, 1, 0, 0, 0, 0}, errFrame},
		{"positioned, epoch past the end", []byte{0, 0, 0, 22, 'M', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0}, errFrame},
		{"history request, epoch past the end", []byte{0, 0, 0, 15, 'Q', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, errFrame},
		{"history answer, unknown flag", []byte{0, 0, 0, 18, 'R', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0}, errFrame},
		{"short history entry", []byte{0, 0, 0, 5, 'E', 0, 0, 0, 1}, errFrame},
		{"join, client past the end", []byte{0, 0, 0, 6, 'J', 0, 1, 0, 1, 'c'}, errFrame},
		{"short leave", []byte{0, 0, 0, 2, 'L', 0}, errFrame},
		{"short presence request", []byte{0, 0, 0, 3, 'W', 0, 0}, errFrame},
		{"presence answer, unknown flag", []byte{0, 0, 0, 6, 'V', 0, 0, 0, 1, 2}, errFrame},
		{"presence answer, entry past the end", []byte{0, 0, 0, 11, 'V', 0, 0, 0, 1, 0, 0, 1, 0, 1, 'c'}, errFrame},
		{"presence answer, half an entry header", []byte{0, 0, 0, 7, 'V', 0, 0, 0, 1, 0, 0}, errFrame},
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
	f.Add(appendAck(appendPublishHistory(nil, 1, 2, "c", []byte("d"), true), 1, 3, "ep"))
	f.Add(appendPositioned(nil, 3, 2, "ep", "c", []byte("d"), false))
	f.Add(appendHistoryEntry(appendHistoryAnswer(appendHistoryRequest(nil, 5, 0, "", "c"), 5, 1, "ep", true, 1), 5, 1, []byte("d"), true))
	f.Add(appendLeave(appendJoin(nil, "c", "client", "{}"), "c", "client"))
	f.Add(appendPresenceFrame(appendPresenceRequest(nil, 6, "c"), 6, false, appendPresenceEntry(nil, "client", "{}")))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for range 1000 {
			raw, fr, err := readFrame(br, buf)
			if err != nil {
				return
			}
			if again := encodeFrame(t, fr); !bytes.Equal(again, raw) {
				t.Fatalf("frame %q re-encodes as %q", raw, again)
			}
			buf = raw[:0]
		}
	})
}
