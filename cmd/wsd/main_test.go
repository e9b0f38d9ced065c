package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/wsd-server/wsd/config"
)

// testVersion is stamped into the test binary to check the -ldflags hook.
const testVersion = "v9.9.9-test"

// wsdBin is the wsd binary built by TestMain.
var wsdBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wsd-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	wsdBin = filepath.Join(dir, "wsd")

	// -buildvcs=false: VCS stamping fails in checkouts git distrusts, and
	// the version under test comes from -ldflags anyway.
	args := []string{"build", "-buildvcs=false", "-o", wsdBin, "-ldflags", "-X github.com/wsd-server/wsd/internal/buildinfo.Version=" + testVersion}
	if raceEnabled {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	return m.Run()
}

type result struct {
	code           int
	stdout, stderr string
}

// wsd runs the built binary with args and, on top of this process's
// environment minus any WSD_* variable, env.
func wsd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wsdBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("wsd %q did not exit within the time limit (a config error should stop it at once)\nstderr:\n%s", args, &stderr)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running wsd %q: %v", args, err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func TestVersion(t *testing.T) {
	want := fmt.Sprintf("wsd version %s %s %s/%s\n", testVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := wsd(t, nil, args...)
		if r.code != 0 || r.stdout != want || r.stderr != "" {
			t.Errorf("wsd %q = status %d, stdout %q, stderr %q; want 0, %q, nothing", args, r.code, r.stdout, r.stderr, want)
		}
	}
}

func TestServeHelpListsEverySetting(t *testing.T) {
	r := wsd(t, nil, "serve", "--help")
	if r.code != 0 {
		t.Fatalf("wsd serve --help: status %d, stderr %q", r.code, r.stderr)
	}
	fs := pflag.NewFlagSet("wsd", pflag.ContinueOnError)
	config.AddFlags(fs)
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		n++
		if !strings.Contains(r.stdout, "--"+f.Name+" ") {
			t.Errorf("wsd serve --help does not list --%s", f.Name)
		}
	})
	if n < 20 {
		t.Errorf("config.AddFlags registered only %d flags", n)
	}
	for _, want := range []string{"WSD_MAX_MSG_SIZE", "(default 3000)", "SIGHUP"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("wsd serve --help lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	unknownKey := filepath.Join(dir, "unknown.toml")
	badTOML := filepath.Join(dir, "bad.toml")
	badValue := filepath.Join(dir, "value.toml")
	for name, text := range map[string]string{
		unknownKey: "port = 8080\nprot = 8081\n",
		badTOML:    "port = = 1\n",
		badValue:   "compression_level = 12\n",
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		env  []string
		args []string
		want []string // lines (or parts of lines) expected on stderr
		help bool     // whether a pointer to --help should follow
	}{
		{name: "port out of range", args: []string{"--port", "70000"},
			want: []string{"wsd: port = 70000: must be between 1 and 65535"}},
		{name: "negative max-msg-size", args: []string{"--max-msg-size", "-1"},
			want: []string{"wsd: max-msg-size = -1: must be positive"}},
		{name: "every problem reported", args: []string{"-p", "0", "--timeout=300", "--log-format", "xml"},
			want: []string{"wsd: port = 0:", "wsd: timeout = 300:", `wsd: log-format = "xml":`}},
		{name: "unknown key in file", args: []string{"--config", unknownKey},
			want: []string{"wsd: config file " + unknownKey + `: unknown key "prot"`}},
		{name: "bad TOML", env: []string{"WSD_CONFIG=" + badTOML},
			want: []string{"wsd: config file " + badTOML + ": toml: line 1"}},
		{name: "bad value in file", args: []string{"--config", badValue},
			want: []string{"wsd: compression-level = 12: must be between 1 and 9"}},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "none.toml")},
			want: []string{"wsd: config file: open " + filepath.Join(dir, "none.toml")}},
		{name: "WSD_PORT not a number", env: []string{"WSD_PORT=abc"},
			want: []string{`wsd: environment: WSD_PORT = "abc": must be an integer`}},
		{name: "bad environment value", env: []string{"WSD_SHUTDOWN_TIMEOUT=0s"},
			want: []string{"wsd: shutdown-timeout = 0s: must be positive"}},
		{name: "worker-timeout too short", args: []string{"--worker-timeout", "100ms"},
			want: []string{"wsd: worker-timeout = 100ms: must be 0 (off) or at least 1s"}},
		{name: "negative WSD_WORKER_TIMEOUT", env: []string{"WSD_WORKER_TIMEOUT=-3s"},
			want: []string{"wsd: worker-timeout = -3s: must be 0 (off) or at least 1s"}},
		{name: "flag beats bad environment", env: []string{"WSD_PORT=70000"}, args: []string{"--port", "0"},
			want: []string{"wsd: port = 0: must be between 1 and 65535"}},
		{name: "flag not a number", args: []string{"--port", "abc"}, help: true,
			want: []string{`wsd: invalid argument "abc" for "-p, --port" flag: must be an integer`}},
		{name: "unknown flag", args: []string{"--prot", "1"}, help: true,
			want: []string{"wsd: unknown flag: --prot"}},
		{name: "stray argument", args: []string{"8080"}, help: true,
			want: []string{`wsd: unknown command "8080" for "wsd serve"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wsd(t, tt.env, append([]string{"serve"}, tt.args...)...)
			if r.code != 2 {
				t.Errorf("status %d, want 2", r.code)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			wantLines := len(tt.want)
			if tt.help {
				wantLines++
			}
			if len(lines) != wantLines {
				t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), wantLines, r.stderr)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("stderr line %d = %q, want it to start with %q", i+1, lines[i], want)
				}
			}
			if tt.help && lines[len(lines)-1] != "Run 'wsd serve --help' for usage." {
				t.Errorf("last stderr line = %q, want the pointer to --help", lines[len(lines)-1])
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, `wsd: unknown command "frobnicate" for "wsd"`},
		{[]string{"version", "extra"}, 2, `wsd: unknown command "extra" for "wsd version"`},
		{[]string{"--bogus"}, 2, "wsd: unknown flag: --bogus"},
		// A command that starts and then fails exits 1: the hidden worker
		// command refuses to run without the sockets a master hands it.
		{[]string{"worker"}, 1, "wsd: "},
	}
	for _, tt := range tests {
		r := wsd(t, nil, tt.args...)
		if r.code != tt.code || !strings.HasPrefix(r.stderr, tt.want) {
			t.Errorf("wsd %q = status %d, stderr %q; want %d, %q...", tt.args, r.code, r.stderr, tt.code, tt.want)
		}
	}
}

func TestNoArguments(t *testing.T) {
	r := wsd(t, nil)
	if r.code != 0 || !strings.Contains(r.stdout, "wsd serve") || !strings.Contains(r.stdout, "Available Commands") {
		t.Errorf("wsd = status %d, stdout %q; want 0 and the overview", r.code, r.stdout)
	}
}
