package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// writeFiles writes each file of files, by base name, into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeKeyPair writes a self-signed certificate and its key as PEM files
// named prefix-cert.pem and prefix-key.pem in dir.
func writeKeyPair(t *testing.T, dir, prefix string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, prefix+"-cert.pem"), filepath.Join(dir, prefix+"-key.pem")
	writeFiles(t, dir, map[string]string{
		prefix + "-cert.pem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		prefix + "-key.pem":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	})
	return certFile, keyFile
}

func TestCheckOK(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "a")
	public := filepath.Join(dir, "www")
	if err := os.Mkdir(public, 0o755); err != nil {
		t.Fatal(err)
	}
	port, adminPort := freePort(t), freePort(t)
	writeFiles(t, dir, map[string]string{"wsd.yaml": "tls_cert: " + cert + "\ntls_key: " + key + "\n" +
		"redis: redis://127.0.0.1:6379/0?dial_timeout=2s\n"})

	tests := []struct {
		name string
		env  []string
		args []string
	}{
		{"defaults on a free port", nil, []string{"--address", "127.0.0.1", "--port", port}},
		{"everything checkable", []string{"WSD_PUBLIC=" + public, "WSD_ADMIN_ADDRESS=127.0.0.1:" + adminPort},
			[]string{"-c", filepath.Join(dir, "wsd.yaml"), "--address", "127.0.0.1", "-p", port}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wsd(t, tt.env, append([]string{"check"}, tt.args...)...)
			if r.code != 0 || r.stdout != "configuration OK\n" || r.stderr != "" {
				t.Errorf("wsd check = status %d, stdout %q, stderr %q; want 0, configuration OK, nothing", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestCheckProblems(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := writeKeyPair(t, dir, "a")
	_, keyB := writeKeyPair(t, dir, "b")
	missing := filepath.Join(dir, "missing")
	writeFiles(t, dir, map[string]string{
		"bad.toml":    "prot = 1\ntimeout = 300\n",
		"bad.yaml":    "compression_level: 12\nmax_msg_size: \"big\"\n",
		"broken.json": "{\"port\": ",
	})
	port := freePort(t)

	tests := []struct {
		name string
		env  []string
		args []string
		want []string // each a part of one stderr line, in order
	}{
		{name: "several values", args: []string{"--port", "70000", "--timeout", "300", "--log-format", "xml", "--processes", "2000"},
			want: []string{"wsd: port = 70000: must be between 1 and 65535", "wsd: processes = 2000: must be at most 1024",
				"wsd: timeout = 300: must be between 0 and 255", `wsd: log-format = "xml": must be text or json`}},
		{name: "key pair that does not match", args: []string{"--tls-cert", certA, "--tls-key", keyB, "-p", port},
			want: []string{`wsd: tls-cert = "` + certA + `": cannot be used with tls-key "` + keyB + `"`}},
		{name: "unreadable key pair", args: []string{"--tls-cert", missing, "--tls-key", keyA, "-p", port},
			want: []string{`wsd: tls-cert = "` + missing + `": does not exist`}},
		{name: "public directory", env: []string{"WSD_PUBLIC=" + missing}, args: []string{"-p", port},
			want: []string{`wsd: public = "` + missing + `": does not exist`}},
		{name: "public file", env: []string{"WSD_PUBLIC=" + certA}, args: []string{"-p", port},
			want: []string{`wsd: public = "` + certA + `": is not a directory`}},
		{name: "redis URL", args: []string{"--redis", "redis://u:secret@cache:6379/0?dial_timeot=1s", "-p", port},
			want: []string{`wsd: redis = "redis://u:xxxxx@cache:6379/0?dial_timeot=1s": unexpected option: dial_timeot`}},
		{name: "address not of this host", args: []string{"--address", "192.0.2.1", "-p", port},
			want: []string{`wsd: address = "192.0.2.1": cannot bind 192.0.2.1:` + port + `: not an address of this host`}},
		{name: "file, environment and flags together",
			env:  []string{"WSD_CONFIG=" + filepath.Join(dir, "bad.toml"), "WSD_PORT=abc"},
			args: []string{"--max-conns", "-1"},
			want: []string{
				"wsd: config file " + filepath.Join(dir, "bad.toml") + `: unknown key "prot" (did you mean "port"?)`,
				`wsd: environment: WSD_PORT = "abc": must be an integer`,
				"wsd: timeout = 300: must be between 0 and 255",
				"wsd: max-conns = -1: must not be negative",
			}},
		{name: "YAML file", args: []string{"-c", filepath.Join(dir, "bad.yaml"), "-p", port},
			want: []string{
				"wsd: config file " + filepath.Join(dir, "bad.yaml") + `: line 2: max_msg_size = "big": must be an integer`,
				"wsd: compression-level = 12: must be between 1 and 9",
			}},
		{name: "JSON that does not parse", args: []string{"-c", filepath.Join(dir, "broken.json"), "-p", port},
			want: []string{"wsd: config file " + filepath.Join(dir, "broken.json") + ": json: unexpected end of file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wsd(t, tt.env, append([]string{"check"}, tt.args...)...)
			if r.code != 2 || r.stdout != "" {
				t.Errorf("status %d, stdout %q; want 2 and nothing", r.code, r.stdout)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(tt.want), r.stderr)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("stderr line %d = %q, want it to start with %q", i+1, lines[i], want)
				}
			}
		})
	}
}

// TestCheckAddressInUse: a bound port is expected while wsd runs, so it is
// a warning and the check passes.
func TestCheckAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	r := wsd(t, nil, "check", "--address", "127.0.0.1", "--port", port, "--admin-address", "127.0.0.1:"+port)
	want := "wsd: warning: port = " + port + ": 127.0.0.1:" + port + " is in use: expected if wsd is running"
	wantAdmin := `wsd: warning: admin-address = "127.0.0.1:` + port + `": 127.0.0.1:` + port + " is in use"
	if r.code != 0 || r.stdout != "configuration OK\n" || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, wantAdmin) {
		t.Errorf("wsd check on a bound port = status %d, stdout %q, stderr %q; want 0, configuration OK and warnings %q, %q",
			r.code, r.stdout, r.stderr, want, wantAdmin)
	}
}

// TestUnknownEnvWarning checks every command that reads the environment.
func TestUnknownEnvWarning(t *testing.T) {
	env := []string{"WSD_PROCESES=2", "WSD_UPGRADE_STATE=", "WSD_PORT=abc"}
	const want = "WSD_PROCESES is not a wsd setting; did you mean WSD_PROCESSES?"
	for _, args := range [][]string{{"check"}, {"config"}, {"serve"}} {
		r := wsd(t, env, args...)
		// WSD_PORT=abc makes each stop at once, with status 2.
		if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "WSD_UPGRADE_STATE") {
			t.Errorf("wsd %s with WSD_PROCESES = status %d, stderr %q; want 2 and a warning %q only", args[0], r.code, r.stderr, want)
		}
		if !strings.Contains(r.stderr, `WSD_PORT = "abc"`) {
			t.Errorf("wsd %s: stderr %q lacks the WSD_PORT error", args[0], r.stderr)
		}
	}
	r := wsd(t, []string{"WSD_PROCESES=2"}, "check", "--address", "127.0.0.1", "--port", freePort(t))
	if r.code != 0 || r.stderr != "wsd: warning: "+want+"\n" {
		t.Errorf("wsd check with WSD_PROCESES = status %d, stderr %q; want 0 and only the warning", r.code, r.stderr)
	}
}
