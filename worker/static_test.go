package worker

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"
	"github.com/wsd-server/wsd/config"
)

// servedWorker runs a worker for cfg on 127.0.0.1 and returns its address;
// the worker stops at the end of the test.
func servedWorker(t *testing.T, cfg config.Config, opts Options) string {
	t.Helper()
	w, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- w.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// rawRequest sends one request exactly as written (no client cleans its
// path) and returns the response with its body read.
func rawRequest(t *testing.T, addr, method, target string, header ...string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req strings.Builder
	req.WriteString(method + " " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n")
	for _, h := range header {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, target, err)
	}
	return resp, body
}

// publicDir makes a --public folder with an index, assets, a hidden file, a
// .well-known file, a folder without an index, symbolic links in and out,
// and a secret beside it that must stay out of reach.
func publicDir(t *testing.T) (dir string, files map[string][]byte) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "public")
	files = map[string][]byte{
		"index.html":               []byte("<!doctype html><title>chat</title><p>hello</p>\n"),
		"app.js":                   []byte(strings.Repeat("console.log('compress me');\n", 400)),
		"style.css":                []byte("body { color: #123; }\n"),
		"data.json":                []byte(`{"ok":true}`),
		"logo.svg":                 []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`),
		"docs/index.html":          []byte("<p>docs</p>\n"),
		"assets/a.txt":             []byte("a\n"),
		"assets/.hidden":           []byte("h\n"),
		"assets/.well-known/x":     []byte("x\n"),
		".env":                     []byte("SECRET=1\n"),
		".git/config":              []byte("[core]\n"),
		".well-known/security.txt": []byte("Contact: mailto:security@example.com\n"),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret.txt"), []byte("outside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{
		"out.txt":     filepath.Join(base, "secret.txt"), // absolute, out of the folder
		"rel-out.txt": "../secret.txt",                   // relative, out of the folder
		"outdir":      base,                              // a folder out of it
		"in.txt":      "style.css",                       // stays inside: served
	} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

func staticConfig(dir string) config.Config {
	cfg := config.Default()
	cfg.Public = dir
	return cfg
}

func TestStaticFiles(t *testing.T) {
	dir, files := publicDir(t)
	addr := servedWorker(t, staticConfig(dir), Options{})
	tests := []struct {
		target string
		status int
		ctype  string // prefix
		body   []byte // nil: not checked
	}{
		{"/", 200, "text/html; charset=utf-8", files["index.html"]},
		{"/index.html", 200, "text/html", files["index.html"]},
		{"/app.js", 200, "text/javascript; charset=utf-8", files["app.js"]},
		{"/style.css", 200, "text/css; charset=utf-8", files["style.css"]},
		{"/data.json", 200, "application/json", files["data.json"]},
		{"/logo.svg", 200, "image/svg+xml", files["logo.svg"]},
		{"/docs/", 200, "text/html", files["docs/index.html"]},
		{"/docs", 302, "", nil},
		{"/in.txt", 200, "text/plain", files["style.css"]},
		{"/?query=1", 200, "text/html", files["index.html"]},
		{"/.well-known/security.txt", 200, "text/plain", files[".well-known/security.txt"]},
		{"/missing.html", 404, "text/plain", nil},
		{"/assets/", 403, "", nil}, // no index, and no listing unless asked
		{"/.env", 404, "", nil},
		{"/.git/config", 404, "", nil},
		{"/docs/../.env", 404, "", nil},
		{"/%2eenv", 404, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			resp, body := rawRequest(t, addr, "GET", tt.target)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.ctype) {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if resp.Header.Get("Wsd-Worker") == "" {
				t.Error("no Wsd-Worker header")
			}
			if tt.status == 200 && resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
}

// TestStaticEscapes asks for the secret beside the folder every way a path
// can climb out: dot segments plain and encoded, backslashes, and symbolic
// links. None may reach it.
func TestStaticEscapes(t *testing.T) {
	dir, _ := publicDir(t)
	addr := servedWorker(t, staticConfig(dir), Options{})
	for _, target := range []string{
		"/../secret.txt",
		"/docs/../../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2E%2E/secret.txt",
		"/..%2fsecret.txt",
		"/%2e%2e%2fsecret.txt",
		"/docs/%2e%2e/%2e%2e/secret.txt",
		"/..%5csecret.txt",
		"/%5c..%5csecret.txt",
		"/....//secret.txt",
		"/out.txt",
		"/rel-out.txt",
		"/outdir/secret.txt",
		"/outdir/",
		"//secret.txt",
		"/%00/secret.txt",
		"/secret.txt%00.html",
	} {
		t.Run(target, func(t *testing.T) {
			resp, body := rawRequest(t, addr, "GET", target)
			if bytes.Contains(body, []byte("outside")) {
				t.Fatalf("%s served the file outside --public: status %d", target, resp.StatusCode)
			}
			if resp.StatusCode < 400 {
				t.Errorf("%s: status %d, want an error", target, resp.StatusCode)
			}
		})
	}
}

func TestStaticConditionalAndRange(t *testing.T) {
	dir, files := publicDir(t)
	addr := servedWorker(t, staticConfig(dir), Options{})

	resp, _ := rawRequest(t, addr, "GET", "/style.css")
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lastMod == "" {
		t.Fatalf("ETag %q, Last-Modified %q: want both", etag, lastMod)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", got)
	}
	if resp, _ := rawRequest(t, addr, "GET", "/style.css", "If-None-Match: "+etag); resp.StatusCode != 304 {
		t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
	}
	if resp, _ := rawRequest(t, addr, "GET", "/style.css", "If-Modified-Since: "+lastMod); resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since: status %d, want 304", resp.StatusCode)
	}
	if resp, _ := rawRequest(t, addr, "GET", "/style.css", `If-None-Match: W/"other"`); resp.StatusCode != 200 {
		t.Errorf("another ETag: status %d, want 200", resp.StatusCode)
	}

	resp, body := rawRequest(t, addr, "GET", "/app.js", "Range: bytes=8-18")
	if resp.StatusCode != 206 {
		t.Fatalf("Range: status %d, want 206", resp.StatusCode)
	}
	if want := files["app.js"][8:19]; !bytes.Equal(body, want) {
		t.Errorf("Range body %q, want %q", body, want)
	}
	if got, want := resp.Header.Get("Content-Range"), "bytes 8-18/"; !strings.HasPrefix(got, want) {
		t.Errorf("Content-Range %q, want %s...", got, want)
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Error("no Accept-Ranges: bytes")
	}
	if resp, _ := rawRequest(t, addr, "GET", "/app.js", "Range: bytes=999999-"); resp.StatusCode != 416 {
		t.Errorf("unsatisfiable Range: status %d, want 416", resp.StatusCode)
	}

	resp, body = rawRequest(t, addr, "HEAD", "/app.js")
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(files["app.js"])) {
		t.Errorf("HEAD: status %d, body %d bytes, Content-Length %d; want 200, 0, %d",
			resp.StatusCode, len(body), resp.ContentLength, len(files["app.js"]))
	}
	resp, _ = rawRequest(t, addr, "POST", "/app.js", "Content-Length: 0")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q; want 405 and GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestStaticCompression checks gzip, brotli and zstd, and that compressing
// writes nothing into the folder, which may be read-only.
func TestStaticCompression(t *testing.T) {
	dir, files := publicDir(t)
	before := listTree(t, dir)
	addr := servedWorker(t, staticConfig(dir), Options{})

	resp, body := rawRequest(t, addr, "GET", "/app.js", "Accept-Encoding: gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Errorf("Vary %q, want Accept-Encoding", resp.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(plain, files["app.js"]) {
		t.Fatalf("gunzipped body differs from the file (err %v)", err)
	}
	if len(body) >= len(files["app.js"]) {
		t.Errorf("gzip body %d bytes, file %d", len(body), len(files["app.js"]))
	}
	for _, enc := range []string{"br", "zstd"} {
		resp, body := rawRequest(t, addr, "GET", "/app.js", "Accept-Encoding: "+enc)
		if got := resp.Header.Get("Content-Encoding"); got != enc || len(body) >= len(files["app.js"]) {
			t.Errorf("Accept-Encoding %s: Content-Encoding %q, %d bytes", enc, got, len(body))
		}
	}
	resp, body = rawRequest(t, addr, "GET", "/app.js")
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, files["app.js"]) {
		t.Error("no Accept-Encoding: the response is not the file as it is")
	}
	if after := listTree(t, dir); !slices.Equal(before, after) {
		t.Errorf("serving wrote into --public:\nbefore %q\nafter  %q", before, after)
	}
}

func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		names = append(names, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestStaticDirListing(t *testing.T) {
	dir, _ := publicDir(t)
	cfg := staticConfig(dir)
	cfg.DirListing = true
	addr := servedWorker(t, cfg, Options{})
	resp, body := rawRequest(t, addr, "GET", "/assets/")
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("a.txt")) {
		t.Fatalf("listing: status %d, body %q", resp.StatusCode, body)
	}
	for _, hidden := range []string{".hidden"} {
		if bytes.Contains(body, []byte(hidden)) {
			t.Errorf("the listing shows %s: %q", hidden, body)
		}
	}
	if !bytes.Contains(body, []byte(".well-known")) {
		t.Errorf("the listing misses .well-known: %q", body)
	}
	// A folder's index.html wins over its listing.
	if _, body := rawRequest(t, addr, "GET", "/"); !bytes.Contains(body, []byte("<p>hello</p>")) {
		t.Errorf("GET / with an index.html: %q", body)
	}
}

// TestStaticBesideWebSocket checks that --public leaves the WebSocket routes
// alone: an upgrade at / still echoes, and /broadcast still upgrades.
func TestStaticBesideWebSocket(t *testing.T) {
	dir, files := publicDir(t)
	addr := servedWorker(t, staticConfig(dir), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, path := range []string{"/", "/broadcast"} {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
		if err != nil {
			t.Fatalf("upgrade at %s: %v", path, err)
		}
		if path == "/" {
			if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.Read(ctx); err != nil || string(msg) != "ping" {
				t.Fatalf("echo: %q, %v", msg, err)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
	if _, body := rawRequest(t, addr, "GET", "/"); !bytes.Equal(body, files["index.html"]) {
		t.Errorf("GET / serves %q, want index.html", body)
	}
}

func TestNewStaticMissingFolder(t *testing.T) {
	cfg := staticConfig(filepath.Join(t.TempDir(), "nope"))
	if _, err := New(cfg, Options{}); err == nil {
		t.Fatal("New accepted a --public folder that does not exist")
	}
}

func TestHidden(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/", false},
		{"/index.html", false},
		{"/a/b.c", false},
		{"/.env", true},
		{"/a/.git/config", true},
		{"/.well-known/security.txt", false},
		{"/.well-known/.hidden", true},
		{"/a..b", false},
	}
	for _, tt := range tests {
		if got := hidden([]byte(tt.path)); got != tt.want {
			t.Errorf("hidden(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func BenchmarkStaticFile(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), bytes.Repeat([]byte("hello "), 500), 0o644); err != nil {
		b.Fatal(err)
	}
	w, err := New(staticConfig(dir), Options{})
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.SetRequestURI("/index.html")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		w.http.Handler(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatal(ctx.Response.StatusCode())
		}
	}
	ctx.Response.Reset()
}

// TestStaticRedirectIsRelative checks that the redirect from a folder to
// its slash-ended path names no host: a forged Host header must not turn
// it into a redirect to another site.
func TestStaticRedirectIsRelative(t *testing.T) {
	dir, _ := publicDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "my dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "my dir", "index.html"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := servedWorker(t, staticConfig(dir), Options{Logger: quiet})
	tests := []struct {
		target, host, want string
	}{
		{"/docs", "evil.example", "/docs/"},
		{"/docs", "evil.example:8443", "/docs/"},
		{"/docs?page=2", "evil.example", "/docs/"}, // fasthttp drops the query
		{"//docs", "evil.example", "/docs/"},
		{"/my%20dir", "evil.example", "/my%20dir/"},
		{"http://evil.example/docs", "evil.example", "/docs/"},
	}
	for _, tt := range tests {
		t.Run(tt.target+" Host "+tt.host, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET "+tt.target+" HTTP/1.1\r\nHost: "+tt.host+"\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			if got := resp.Header.Get("Location"); got != tt.want {
				t.Errorf("Location %q, want %q", got, tt.want)
			}
		})
	}
}
