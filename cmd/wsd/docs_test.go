package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestManPagesAreCurrent fails when docs/man is not what `make man` writes
// today: a command, flag or help text changed without it. The .TH line,
// which holds the month of the build, is left out of the comparison.
func TestManPagesAreCurrent(t *testing.T) {
	dir := t.TempDir()
	if r := wsd(t, nil, "man", "--dir", dir); r.code != 0 {
		t.Fatalf("wsd man: status %d, stderr %q", r.code, r.stderr)
	}
	const checkedIn = "../../docs/man"
	got, want := manPages(t, dir), manPages(t, checkedIn)
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("docs/man is out of date: run make man\nwsd man writes %v\ndocs/man has %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for name, page := range got {
		if page != want[name] {
			t.Errorf("docs/man/%s is out of date: run make man", name)
		}
	}
	for _, hidden := range []string{"wsd-worker.1", "wsd-man.1"} {
		if _, ok := got[hidden]; ok {
			t.Errorf("a man page for the hidden command: %s", hidden)
		}
	}
	if !strings.Contains(got["wsd-health.1"], "HEALTHCHECK") {
		t.Errorf("wsd-health.1 does not describe the command:\n%s", got["wsd-health.1"])
	}
}

// manPages returns the pages in dir, without their .TH line.
func manPages(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.1"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no man pages in %s (%v): run make man", dir, err)
	}
	pages := make(map[string]string)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for l := range strings.SplitSeq(string(b), "\n") {
			if !strings.HasPrefix(l, ".TH ") {
				lines = append(lines, l)
			}
		}
		pages[filepath.Base(f)] = strings.Join(lines, "\n")
	}
	return pages
}

// TestCompletion: cobra's completion command is listed and works.
func TestCompletion(t *testing.T) {
	if r := wsd(t, nil, "--help"); !strings.Contains(r.stdout, "\n  completion ") {
		t.Errorf("wsd --help does not list completion:\n%s", r.stdout)
	}
	for _, tt := range []struct{ shell, want string }{
		{"bash", "# bash completion V2 for wsd"},
		{"zsh", "#compdef wsd"},
		{"fish", "# fish completion for wsd"},
	} {
		r := wsd(t, nil, "completion", tt.shell)
		if r.code != 0 || !strings.Contains(r.stdout, tt.want) {
			t.Errorf("wsd completion %s: status %d, %d bytes without %q; stderr %q", tt.shell, r.code, len(r.stdout), tt.want, r.stderr)
		}
	}
}
