package master

// Tests of the deployment files that ship with the master: the systemd unit
// and the Dockerfile.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsd-server/wsd/config"
)

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unitSettings returns the unit's Key=Value lines, last one winning.
func unitSettings(unit string) map[string]string {
	kv := make(map[string]string)
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

func TestSystemdUnit(t *testing.T) {
	unit := readRepoFile(t, "systemd/wsd.service")
	kv := unitSettings(unit)
	want := map[string]string{
		"Type":                     "notify",
		"WatchdogSec":              "30s",
		"ExecStart":                "/usr/local/bin/wsd serve",
		"ExecReload":               "/usr/local/bin/wsd reload --pid-file /run/wsd/wsd.pid",
		"Environment":              "WSD_PID_FILE=/run/wsd/wsd.pid",
		"RuntimeDirectory":         "wsd",
		"RestartPreventExitStatus": "2",
		"KillMode":                 "mixed",
		"KillSignal":               "SIGTERM",
		"LimitNOFILE":              "1048576",
		"DynamicUser":              "yes",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"PrivateTmp":               "yes",
	}
	for k, v := range want {
		if kv[k] != v {
			t.Errorf("%s=%q, want %q", k, kv[k], v)
		}
	}
	// A man: page would fail systemd-analyze verify where it is not
	// installed.
	if !strings.HasPrefix(kv["Documentation"], "https://") {
		t.Errorf("Documentation=%q, want the operations guide's URL", kv["Documentation"])
	}
	// systemd's SIGKILL must not cut a graceful stop short: the master
	// allows shutdown-timeout plus killGrace.
	stop, err := time.ParseDuration(kv["TimeoutStopSec"] + "s")
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v", kv["TimeoutStopSec"], err)
	}
	if min := config.Default().ShutdownTimeout + killGrace; stop <= min {
		t.Errorf("TimeoutStopSec=%s, want more than the default graceful stop %s", stop, min)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd): unit not verified by systemd")
	}
	// verify wants ExecStart's binary to exist: point it at this test.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "wsd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/wsd", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// verify exits 0 on unknown keys and bad values, but says so.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestDockerfile(t *testing.T) {
	df := readRepoFile(t, "Dockerfile")
	for _, re := range []string{
		`(?m)^FROM \S+ AS build$`,             // multi-stage
		`(?m)^FROM scratch$`,                  // nothing but the binary
		`CGO_ENABLED=0 go build`,              // static
		`(?m)^USER [1-9][0-9]*:[0-9]+$`,       // not root
		`(?m)^ENTRYPOINT \["wsd", "serve"\]$`, // exec form: the master is PID 1
		`(?m)^STOPSIGNAL SIGTERM$`,
	} {
		if !regexp.MustCompile(re).MatchString(df) {
			t.Errorf("Dockerfile does not match %s", re)
		}
	}
}
