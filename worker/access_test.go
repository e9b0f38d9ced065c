package worker

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/config"
)

// syncBuffer is a bytes.Buffer that the worker's goroutines may log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for line := range bytes.Lines(s.b.Bytes()) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestAccessLog(t *testing.T) {
	dir := t.TempDir()
	page := bytes.Repeat([]byte("x"), 5000)
	if err := os.WriteFile(filepath.Join(dir, "page.html"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := staticConfig(dir)
	cfg.AccessLog = true
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With("worker", 42)
	addr := servedWorker(t, cfg, Options{Logger: log})

	rawRequest(t, addr, "GET", "/page.html?token=secret")
	rawRequest(t, addr, "GET", "/missing")
	rawRequest(t, addr, "HEAD", "/page.html")

	want := []struct {
		method, path string
		status       float64
		bytes        float64
	}{
		{"GET", "/page.html", 200, float64(len(page))},
		{"GET", "/missing", 404, float64(len("404 Not Found\n"))},
		{"HEAD", "/page.html", 200, 0}, // no body is sent
	}
	var got []map[string]any
	for _, l := range buf.lines(t) {
		if l["msg"] == "access" {
			got = append(got, l)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d access lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		l := got[i]
		if l["method"] != w.method || l["path"] != w.path || l["status"] != w.status || l["bytes"] != w.bytes {
			t.Errorf("line %d: %v; want %s %s %v %v bytes", i, l, w.method, w.path, w.status, w.bytes)
		}
		if l["worker"] != float64(42) || l["remote"] != "127.0.0.1" || l["level"] != "INFO" {
			t.Errorf("line %d: %v: want worker 42, remote 127.0.0.1, level INFO", i, l)
		}
		if _, ok := l["duration"].(float64); !ok {
			t.Errorf("line %d: no duration: %v", i, l)
		}
	}
	if bytes.Contains(buf.b.Bytes(), []byte("secret")) {
		t.Error("the access log carries the query string")
	}
}

func TestAccessLogOff(t *testing.T) {
	var buf syncBuffer
	addr := servedWorker(t, config.Default(), Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	rawRequest(t, addr, "GET", "/")
	for _, l := range buf.lines(t) {
		if l["msg"] == "access" {
			t.Fatalf("an access line without --access-log: %v", l)
		}
	}
}

func BenchmarkAccessLog(b *testing.B) {
	cfg := config.Default()
	cfg.AccessLog = true
	w, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.SetRequestURI("/")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		w.http.Handler(&ctx)
	}
}
