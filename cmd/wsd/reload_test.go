package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The ways `wsd reload` fails before it signals anything: nothing to find
// the server with, a pid file naming no process or no wsd master, an admin
// address that does not answer. (The reloads themselves are tested in
// package master, against a real daemon.)
func TestReloadCannotSignal(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// A pid that is surely not running: beyond pid_max's usual limits.
	stale := write("stale.pid", "4194304\n")
	// This test process is running, but it is no wsd master.
	notWSD := write("other.pid", strconv.Itoa(os.Getpid())+"\n")
	garbage := write("garbage.pid", "hello\n")
	noStatus := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(noStatus.Close)

	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{"no way to find it", nil, nil, 2, "reload needs --pid-file or --admin-address"},
		{"pid file from the environment", []string{"WSD_PID_FILE=" + stale}, nil, 1, "no process has pid 4194304"},
		{"stale pid file", nil, []string{"--pid-file", stale}, 1, "wsd is not running"},
		{"missing pid file", nil, []string{"--pid-file", filepath.Join(dir, "none.pid")}, 1, "no such file"},
		{"not a pid", nil, []string{"--pid-file", garbage}, 1, "does not hold a pid"},
		{"not a wsd master", nil, []string{"--pid-file", notWSD}, 1, "is not a wsd master"},
		{"admin address without /status", nil, []string{"--admin-address", strings.TrimPrefix(noStatus.URL, "http://")}, 1, "GET /status: 404"},
		{"broken configuration", []string{"WSD_PORT=many"}, nil, 2, "finding the server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wsd(t, tt.env, append([]string{"reload"}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("wsd reload %q: status %d, stderr %q; want %d and %q", tt.args, r.code, r.stderr, tt.code, tt.stderr)
			}
		})
	}
}
