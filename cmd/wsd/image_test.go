package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsd-server/wsd/config"
)

// imageStage is the final stage of the Dockerfile: its instructions, one
// per logical line (continuations joined), keyed by keyword.
type imageStage map[string][]string

func readDockerfile(t *testing.T) imageStage {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stage := imageStage{} // the global ARGs before the first FROM
	var logical string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if logical == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			logical += rest + " "
			continue
		}
		logical += line
		keyword, args, _ := strings.Cut(logical, " ")
		keyword = strings.ToUpper(keyword)
		logical = ""
		if keyword == "FROM" {
			stage = imageStage{}
		}
		stage[keyword] = append(stage[keyword], strings.TrimSpace(args))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stage
}

// pairs parses KEY=VALUE words, values optionally double-quoted.
func pairs(t *testing.T, lines []string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	for _, l := range lines {
		for _, f := range words(l) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("not KEY=VALUE: %q in %q", f, l)
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			m[k] = v
		}
	}
	return m
}

// words splits s at the spaces outside double quotes.
func words(s string) []string {
	var (
		out    []string
		word   strings.Builder
		quoted bool
	)
	for _, r := range s + " " {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if word.Len() > 0 {
				out = append(out, word.String())
				word.Reset()
			}
			continue
		}
		word.WriteRune(r)
	}
	return out
}

// TestDockerfile checks the final stage of the image: a non-root user, the
// ports it serves, an exec-form health check with `wsd health` (the image
// has no shell), the OCI labels, and an environment of real settings.
func TestDockerfile(t *testing.T) {
	st := readDockerfile(t)
	env := pairs(t, st["ENV"])
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	if unknown := config.UnknownEnv(envList); len(unknown) > 0 {
		t.Errorf("ENV sets what is no setting: %v", unknown)
	}
	_, adminPort, err := net.SplitHostPort(env["WSD_ADMIN_ADDRESS"])
	if err != nil {
		t.Errorf("ENV WSD_ADMIN_ADDRESS=%q: %v", env["WSD_ADMIN_ADDRESS"], err)
	}
	labels := pairs(t, st["LABEL"])
	tests := []struct {
		what, got, want string
	}{
		{"FROM", strings.Join(st["FROM"], ";"), "scratch"},
		{"USER", strings.Join(st["USER"], ";"), "65532:65532"},
		{"EXPOSE", strings.Join(st["EXPOSE"], ";"), env["WSD_PORT"] + " " + adminPort},
		{"ENTRYPOINT", strings.Join(st["ENTRYPOINT"], ";"), `["wsd", "serve"]`},
		{"STOPSIGNAL", strings.Join(st["STOPSIGNAL"], ";"), "SIGTERM"},
		{"label licenses", labels["org.opencontainers.image.licenses"], "MIT"},
		{"label source", labels["org.opencontainers.image.source"], "https://github.com/wsd-server/wsd"},
		{"label version", labels["org.opencontainers.image.version"], "${VERSION}"},
		{"label revision", labels["org.opencontainers.image.revision"], "${REVISION}"},
		{"label created", labels["org.opencontainers.image.created"], "${CREATED}"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.what, tt.got, tt.want)
		}
	}
	if len(st["HEALTHCHECK"]) != 1 {
		t.Fatalf("HEALTHCHECK: %q, want one", st["HEALTHCHECK"])
	}
	_, cmd, ok := strings.Cut(st["HEALTHCHECK"][0], "CMD ")
	var argv []string
	if !ok || json.Unmarshal([]byte(cmd), &argv) != nil || len(argv) < 2 || argv[0] != "wsd" || argv[1] != "health" {
		t.Errorf("HEALTHCHECK %q: want the exec form CMD [\"wsd\", \"health\", ...]", st["HEALTHCHECK"][0])
	}
}

// TestAsInTheImage runs wsd as the image does, without the image: as uid
// 65532, in /, with the image's environment and nothing else (the ports
// and address moved to free loopback ones), and checks that `wsd health`,
// run the same way, passes, and that SIGTERM stops it with status 0.
// `make image-test` does the same in a real container, on a read-only
// root file system.
func TestAsInTheImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run wsd as uid 65532")
	}
	// The binary must be reachable by uid 65532.
	if err := os.Chmod(filepath.Dir(wsdBin), 0o755); err != nil {
		t.Fatal(err)
	}
	env := pairs(t, readDockerfile(t)["ENV"])
	env["WSD_ADDRESS"] = "127.0.0.1"
	env["WSD_PORT"] = strconv.Itoa(freeTCPPort(t))
	env["WSD_ADMIN_ADDRESS"] = "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	slices.Sort(environ)
	asImage := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, wsdBin, args...)
		cmd.Env, cmd.Dir = environ, "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		return cmd
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	serve := asImage(ctx, "serve")
	serve.Stderr = &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()

	var health []byte
	for {
		out, err := asImage(ctx, "health", "--timeout", "2s").CombinedOutput()
		if err == nil {
			health = out
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("wsd serve as uid 65532 exited: %v\n%s", err, &stderr)
		case <-ctx.Done():
			t.Fatalf("wsd health never passed; last: %s\nwsd serve:\n%s", out, &stderr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !strings.HasPrefix(string(health), "healthy: GET http://"+env["WSD_ADMIN_ADDRESS"]+"/readyz: 200 OK: ready") {
		t.Errorf("wsd health: %q", health)
	}
	if status, err := os.ReadFile("/proc/" + strconv.Itoa(serve.Process.Pid) + "/status"); err == nil &&
		!strings.Contains(string(status), "\nUid:\t65532\t65532\t65532\t65532\n") {
		t.Errorf("the master does not run as uid 65532:\n%s", status)
	}
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, &stderr)
		}
	case <-ctx.Done():
		t.Fatalf("no exit after SIGTERM\n%s", &stderr)
	}
	// WSD_LOG_FORMAT=json: every line is JSON.
	for l := range strings.SplitSeq(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Errorf("not a JSON log line: %s", l)
		}
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
