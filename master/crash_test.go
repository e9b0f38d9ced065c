package master

import (
	"testing"
	"time"
)

func TestRestartDelay(t *testing.T) {
	const base, max = 100 * time.Millisecond, 5 * time.Second
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 0},
		{1, 0},
		{2, 100 * time.Millisecond},
		{3, 200 * time.Millisecond},
		{4, 400 * time.Millisecond},
		{7, 3200 * time.Millisecond},
		{8, max},
		{100, max},
	}
	for _, tt := range tests {
		if got := restartDelay(tt.n, base, max); got != tt.want {
			t.Errorf("restartDelay(%d) = %s, want %s", tt.n, got, tt.want)
		}
	}
}

func TestCrashLogWindow(t *testing.T) {
	const window = 30 * time.Second
	var c crashLog
	t0 := time.Unix(1000, 0)
	tests := []struct {
		at   time.Duration
		want int
	}{
		{0, 1},
		{time.Second, 2},
		{29 * time.Second, 3},
		{30 * time.Second, 3},          // the first one left the window
		{31 * time.Second, 3},          // and the second
		{time.Minute + time.Second, 1}, // all old ones gone
	}
	for _, tt := range tests {
		if got := c.add(t0.Add(tt.at), window); got != tt.want {
			t.Errorf("failure at +%s: %d in the window, want %d", tt.at, got, tt.want)
		}
	}
}
