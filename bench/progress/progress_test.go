package progress

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the display goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLine(t *testing.T) {
	tests := []struct {
		name     string
		tty      bool
		interval time.Duration
	}{
		{"terminal", true, 0},
		{"log", false, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			var n atomic.Int64
			l := Start(&out, tt.tty, "echo", "msg/s", &n, tt.interval)
			deadline := time.Now().Add(10 * time.Second)
			for strings.Count(out.String(), "echo") < 2 && time.Now().Before(deadline) {
				n.Add(100)
				time.Sleep(10 * time.Millisecond)
			}
			l.Stop()
			l.Stop()
			s := out.String()
			if strings.Count(s, "echo") < 2 || !strings.Contains(s, "msg/s") {
				t.Fatalf("output %q", s)
			}
			if got := strings.Contains(s, "\r\033[K"); got != tt.tty {
				t.Errorf("line rewriting in %q: %v, want %v", s, got, tt.tty)
			}
			if !tt.tty && strings.Count(s, "\n") < 2 {
				t.Errorf("log output %q has no separate lines", s)
			}
		})
	}
}

func TestHuman(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {1.5, "1.50"}, {42.42, "42.4"}, {999, "999"}, {9999, "9999"},
		{68512, "68.5 k"}, {446e6, "446 M"}, {1.25e9, "1.25 G"}, {-20000, "-20.0 k"},
	}
	for _, tt := range tests {
		if got := Human(tt.in); got != tt.want {
			t.Errorf("Human(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is a terminal")
	}
}

func ExampleFormat() {
	fmt.Println(Format("wsd echo 64 B × 100", 2100*time.Millisecond, 68512, "msg/s", 143000))
	// Output: wsd echo 64 B × 100    2.1s  68.5 k msg/s  (143 k total)
}
