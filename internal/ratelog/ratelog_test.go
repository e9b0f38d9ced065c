package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Second)
	clock := time.Unix(1000, 0)
	l.now = func() time.Time { return clock }

	steps := []struct {
		advance time.Duration
		key     string
		want    string // substring of the new line, "" for none
	}{
		{0, "accept", "msg=first"},
		{100 * time.Millisecond, "accept", ""},
		{100 * time.Millisecond, "accept", ""},
		{0, "redis", "msg=first"}, // kinds are independent
		{time.Second, "accept", "suppressed=2"},
		{time.Second, "accept", "msg=first"},
	}
	for i, s := range steps {
		clock = clock.Add(s.advance)
		before := buf.Len()
		l.Error(s.key, "first")
		line := buf.String()[before:]
		if s.want == "" && line != "" {
			t.Fatalf("step %d: wrote %q, want nothing", i, line)
		}
		if s.want != "" && !strings.Contains(line, s.want) {
			t.Fatalf("step %d: wrote %q, want it to contain %q", i, line, s.want)
		}
		if s.want == "msg=first" && strings.Contains(line, "suppressed") {
			t.Fatalf("step %d: %q reports suppressed lines where none were", i, line)
		}
	}
}

func TestLimiterDisabledLevel(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), 0)
	l.Warn("k", "quiet")
	if buf.Len() != 0 {
		t.Fatalf("a disabled level wrote %q", buf.String())
	}
	// A disabled level must not use up the kind's allowance.
	l.Error("k", "loud")
	if !strings.Contains(buf.String(), "loud") {
		t.Fatalf("got %q", buf.String())
	}
}

func BenchmarkLimiterSuppressed(b *testing.B) {
	l := New(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		l.Error("k", "flood")
	}
}
