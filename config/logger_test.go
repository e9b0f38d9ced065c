package config

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLogger(t *testing.T) {
	tests := []struct {
		format, level string
		wantJSON      bool
		wantDebug     bool
	}{
		{"text", "info", false, false},
		{"json", "info", true, false},
		{"json", "debug", true, true},
		{"text", "error", false, false},
		{"bogus", "bogus", false, false}, // Validate rejects these; Logger falls back
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.level, func(t *testing.T) {
			c := Default()
			c.LogFormat, c.LogLevel = tt.format, tt.level
			var out strings.Builder
			log := c.Logger(&out, slog.Int("pid", 42))
			log.Debug("quiet")
			log.Error("loud", "k", "v")

			text := out.String()
			if got := strings.Contains(text, "quiet"); got != tt.wantDebug {
				t.Errorf("debug record written = %v, want %v:\n%s", got, tt.wantDebug, text)
			}
			last := text[strings.LastIndex(strings.TrimSuffix(text, "\n"), "\n")+1:]
			if tt.wantJSON {
				var rec map[string]any
				if err := json.Unmarshal([]byte(last), &rec); err != nil {
					t.Fatalf("not JSON: %q: %v", last, err)
				}
				if rec["msg"] != "loud" || rec["pid"] != float64(42) || rec["k"] != "v" {
					t.Errorf("record = %v", rec)
				}
			} else if !strings.Contains(last, "msg=loud") || !strings.Contains(last, "pid=42") || !strings.Contains(last, "k=v") {
				t.Errorf("text record = %q", last)
			}
		})
	}
}
