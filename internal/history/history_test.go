package history

import (
	"fmt"
	"testing"
	"time"
)

func TestHistoryRecovery(t *testing.T) {
	h := New(5, time.Minute, 1<<20)
	if top := h.Top("c"); top != (Position{}) {
		t.Fatalf("top of an unknown channel = %+v, want zero (and nothing made)", top)
	}
	if len(h.chans) != 0 {
		t.Fatal("asking about a channel made a stream")
	}
	var last Position
	for i := 1; i <= 8; i++ {
		last = h.Add("c", []byte(fmt.Sprint(i)), true)
		if last.Offset != uint64(i) {
			t.Fatalf("message %d got offset %d", i, last.Offset)
		}
	}
	epoch := last.Epoch
	tests := []struct {
		name      string
		pos       Position
		recovered bool
		first     uint64 // offset of the first message returned, 0 for none
		count     int
	}{
		{"up to date", Position{8, epoch}, true, 0, 0},
		{"missed two", Position{6, epoch}, true, 7, 2},
		{"missed exactly what is kept", Position{3, epoch}, true, 4, 5},
		{"missed more than is kept", Position{2, epoch}, false, 0, 0},
		{"another epoch", Position{6, "other"}, false, 0, 0},
		{"beyond the top", Position{9, epoch}, false, 0, 0},
		{"the whole stream, partly gone", Position{}, false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, top, ok := h.Since("c", tc.pos)
			if ok != tc.recovered || len(msgs) != tc.count || top != last {
				t.Fatalf("since(%+v) = %d messages, top %+v, recovered %v; want %d, %+v, %v", tc.pos, len(msgs), top, ok, tc.count, last, tc.recovered)
			}
			for i, m := range msgs {
				if m.Offset != tc.first+uint64(i) || string(m.Data) != fmt.Sprint(m.Offset) {
					t.Fatalf("message %d: offset %d %q", i, m.Offset, m.Data)
				}
			}
		})
	}
	if msgs, _, ok := h.Since("new", Position{}); !ok || msgs != nil {
		t.Fatalf("the zero position on an unknown channel: %v %v, want recovered and nothing", msgs, ok)
	}
	h.Add("young", []byte("a"), true)
	if msgs, _, ok := h.Since("young", Position{}); !ok || len(msgs) != 1 {
		t.Fatalf("the whole of a stream still complete: %d messages, recovered %v", len(msgs), ok)
	}
}

func TestHistoryBounds(t *testing.T) {
	t.Run("TTL", func(t *testing.T) {
		h := New(100, time.Second, 1<<20)
		clock := time.Unix(1000, 0)
		h.now = func() time.Time { return clock }
		p1 := h.Add("c", []byte("old"), true)
		clock = clock.Add(2 * time.Second)
		h.Add("c", []byte("new"), true)
		if _, _, ok := h.Since("c", Position{0, p1.Epoch}); ok {
			t.Fatal("an expired message was still counted as kept")
		}
		if msgs, _, ok := h.Since("c", p1); !ok || len(msgs) != 1 {
			t.Fatalf("after the expired one: %d messages, recovered %v", len(msgs), ok)
		}
	})
	t.Run("total bytes evict whole channels, oldest first", func(t *testing.T) {
		const payload = 1000
		h := New(100, 0, 3*entryCost(payload))
		a := h.Add("a", make([]byte, payload), false)
		h.Add("b", make([]byte, payload), false)
		h.Add("c", make([]byte, payload), false)
		h.Add("d", make([]byte, payload), false) // over: "a" goes
		if _, ok := h.chans["a"]; ok {
			t.Fatal("the least recently published channel was kept over the bound")
		}
		if h.bytes > 3*entryCost(payload) {
			t.Fatalf("%d bytes kept, bound %d", h.bytes, 3*entryCost(payload))
		}
		b := h.Add("a", []byte("x"), false)
		if b.Epoch == a.Epoch || b.Offset != 1 {
			t.Fatalf("an evicted channel came back as %+v (was %+v): want a new epoch from offset 1", b, a)
		}
		if _, _, ok := h.Since("a", a); ok {
			t.Fatal("a position in the evicted stream was recovered")
		}
	})
}

func BenchmarkHistoryAdd(b *testing.B) {
	h := New(1000, 0, 64<<20)
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		h.Add("c", msg, false)
	}
}
