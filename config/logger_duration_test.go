package config

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLoggerDurations: a duration reads as "1.5s" in both formats, in a
// group and in the attrs given to Logger too, where JSON would otherwise
// print nanoseconds.
func TestLoggerDurations(t *testing.T) {
	tests := []struct {
		format string
		want   []string
	}{
		{"json", []string{`"duration":"1.5s"`, `"tiny":"41µs"`, `"g":{"inner":"2m0s"}`, `"uptime":"1h0m0s"`, `"n":3`}},
		{"text", []string{"duration=1.5s", "tiny=41µs", "g.inner=2m0s", "uptime=1h0m0s", "n=3"}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			c := Default()
			c.LogFormat, c.LogLevel = tt.format, "info"
			var out strings.Builder
			log := c.Logger(&out, slog.Duration("uptime", time.Hour))
			log.Info("access", "duration", 1500*time.Millisecond, "tiny", 41*time.Microsecond,
				slog.Group("g", slog.Duration("inner", 2*time.Minute)), "n", 3)
			line := out.String()
			if tt.format == "json" && !json.Valid([]byte(line)) {
				t.Fatalf("not JSON: %s", line)
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("%s lacks %s", line, w)
				}
			}
		})
	}
}
