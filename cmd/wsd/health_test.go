package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeAdmin serves /readyz with status and body, and GET / with Hello World!.
func fakeAdmin(t *testing.T, status int, body string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintln(w, body)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "Hello World!")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestHealth(t *testing.T) {
	ready := fakeAdmin(t, http.StatusOK, "ready")
	notReady := fakeAdmin(t, http.StatusServiceUnavailable, "not ready: slot 1 has no worker serving")
	_, readyPort, _ := net.SplitHostPort(ready)
	closed := func() string {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()

	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout string // the whole line, when 0
		stderr string // a prefix of the line, when 1
	}{
		{name: "ready", args: []string{"--admin-address", ready}, code: 0,
			stdout: "healthy: GET http://" + ready + "/readyz: 200 OK: ready\n"},
		{name: "not ready", args: []string{"--admin-address", notReady}, code: 1,
			stderr: "wsd: GET http://" + notReady + "/readyz: 503 Service Unavailable: not ready: slot 1 has no worker serving\n"},
		{name: "nothing listens", args: []string{"--admin-address", closed}, code: 1,
			stderr: "wsd: GET http://" + closed + "/readyz: dial tcp " + closed + ": connect: connection refused\n"},
		{name: "url", args: []string{"--url", "http://" + ready + "/"}, code: 0,
			stdout: "healthy: GET http://" + ready + "/: 200 OK: Hello World!\n"},
		{name: "url answering 404", args: []string{"--url", "http://" + ready + "/nope"}, code: 1,
			stderr: "wsd: GET http://" + ready + "/nope: 404 Not Found: 404 page not found\n"},
		{name: "admin address from the environment, on every interface", env: []string{"WSD_ADMIN_ADDRESS=:" + readyPort}, code: 0,
			stdout: "healthy: GET http://127.0.0.1:" + readyPort + "/readyz: 200 OK: ready\n"},
		{name: "the port from the environment", env: []string{"WSD_PORT=" + readyPort, "WSD_ADDRESS=0.0.0.0"}, code: 0,
			stdout: "healthy: GET http://127.0.0.1:" + readyPort + "/: 200 OK: Hello World!\n"},
		{name: "flag over environment", env: []string{"WSD_ADMIN_ADDRESS=" + closed}, args: []string{"--admin-address", ready}, code: 0,
			stdout: "healthy: GET http://" + ready + "/readyz: 200 OK: ready\n"},
		{name: "bad configuration", env: []string{"WSD_PORT=abc"}, code: 1,
			stderr: `wsd: configuration: environment: WSD_PORT = "abc": must be an integer`},
		// Docker reserves status 2: a usage error is 1 too.
		{name: "both flags", args: []string{"--admin-address", ready, "--url", "http://" + ready + "/"}, code: 1,
			stderr: "wsd: if any flags in the group [admin-address url] are set none of the others can be"},
		{name: "unknown flag", args: []string{"--bogus"}, code: 1, stderr: "wsd: unknown flag: --bogus\n"},
		{name: "argument", args: []string{"extra"}, code: 1, stderr: `wsd: unknown command "extra" for "wsd health"`},
		{name: "not an http URL", args: []string{"--url", "ftp://" + ready}, code: 1,
			stderr: `wsd: --url "ftp://` + ready + `": must be an http:// or https:// URL`},
		{name: "no port", args: []string{"--admin-address", "127.0.0.1"}, code: 1,
			stderr: "wsd: --admin-address: address 127.0.0.1: missing port in address\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wsd(t, tt.env, append([]string{"health", "--timeout", "5s"}, tt.args...)...)
			if r.code != tt.code {
				t.Errorf("status %d, want %d (stdout %q, stderr %q)", r.code, tt.code, r.stdout, r.stderr)
			}
			if tt.code == 0 && (r.stdout != tt.stdout || r.stderr != "") {
				t.Errorf("stdout %q, stderr %q; want %q and nothing", r.stdout, r.stderr, tt.stdout)
			}
			if tt.code != 0 && (!strings.HasPrefix(r.stderr, tt.stderr) || r.stdout != "") {
				t.Errorf("stdout %q, stderr %q; want nothing and %q...", r.stdout, r.stderr, tt.stderr)
			}
		})
	}
}

func TestLoopback(t *testing.T) {
	tests := []struct{ in, want string }{
		{":9090", "127.0.0.1:9090"},
		{"0.0.0.0:9090", "127.0.0.1:9090"},
		{"[::]:9090", "[::1]:9090"},
		{"127.0.0.2:9090", "127.0.0.2:9090"},
		{"[::1]:3000", "[::1]:3000"},
		{"localhost:3000", "localhost:3000"},
	}
	for _, tt := range tests {
		if got, err := loopback(tt.in); err != nil || got != tt.want {
			t.Errorf("loopback(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := loopback("9090"); err == nil {
		t.Error("loopback(9090): no error")
	}
}
