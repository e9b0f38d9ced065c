package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wsd-server/wsd/internal/workerproto"
)

// TestMain lets the daemon that generate runs re-execute this test binary
// as its worker, as it re-executes wsd.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == workerproto.Command {
		if err := runWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestMetricsReferenceIsCurrent fails when docs/metrics.md is not what the
// generator writes today: a metric was added, renamed or redescribed
// without "make docs".
func TestMetricsReferenceIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got, err := generate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const path = "../../../docs/metrics.md"
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := line(gl, i), line(wl, i)
			if g != w {
				t.Fatalf("docs/metrics.md is out of date: run make docs\nline %d is\n\t%s\nand should be\n\t%s", i+1, w, g)
			}
		}
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end of file)"
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a|b", `a\|b`},
		{"two\nlines", "two lines"},
	}
	for _, tt := range tests {
		if got := escape(tt.in); got != tt.want {
			t.Errorf("escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
