package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// configValues runs wsd config --format json with args and returns the
// settings it prints, without their sources.
func configValues(t *testing.T, env []string, args ...string) map[string]any {
	t.Helper()
	r := wsd(t, env, append([]string{"config", "--format", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("wsd config %q: status %d, stderr %q", args, r.code, r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("wsd config %q printed invalid JSON: %v\n%s", args, err, r.stdout)
	}
	delete(m, "_sources")
	return m
}

// TestConfigSources sets one setting in each of the four places and checks
// that every format names each source.
func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "wsd.yaml")
	writeFiles(t, dir, map[string]string{"wsd.yaml": "log_level: debug\ntimeout: 5\n"})
	env := []string{"WSD_CONFIG=" + file, "WSD_TIMEOUT=20", "WSD_PUBLISH_TOKEN=s3cret-t0ken"}
	args := []string{"--port", "8080"}
	want := []struct{ key, value, source string }{
		{"address", `"0.0.0.0"`, "default"},
		{"log_level", `"debug"`, "file " + file},
		{"timeout", "20", "environment WSD_TIMEOUT"},
		{"port", "8080", "flag --port"},
	}

	for _, tt := range []struct{ format, sep string }{{"toml", " = "}, {"yaml", ": "}, {"", ": "}} {
		t.Run("format "+tt.format, func(t *testing.T) {
			a := args
			if tt.format != "" {
				a = append(a, "--format", tt.format)
			}
			// Without --format, the format is that of the file: YAML.
			r := wsd(t, env, append([]string{"config"}, a...)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("status %d, stderr %q", r.code, r.stderr)
			}
			for _, w := range want {
				re := regexp.MustCompile(`(?m)^` + w.key + regexp.QuoteMeta(tt.sep+w.value) + ` +# ` + regexp.QuoteMeta(w.source) + `$`)
				if !re.MatchString(r.stdout) {
					t.Errorf("output lacks %s%s%s  # %s:\n%s", w.key, tt.sep, w.value, w.source, r.stdout)
				}
			}
			if strings.Contains(r.stdout, "s3cret-t0ken") || !strings.Contains(r.stdout, "publish_token") {
				t.Errorf("output shows the publish token, or does not mention it:\n%s", r.stdout)
			}
		})
	}

	t.Run("format json", func(t *testing.T) {
		r := wsd(t, env, append([]string{"config", "--format", "json", "--show-secrets"}, args...)...)
		var doc map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &doc) != nil {
			t.Fatalf("status %d, stderr %q, stdout:\n%s", r.code, r.stderr, r.stdout)
		}
		sources, _ := doc["_sources"].(map[string]any)
		for _, w := range want {
			if value, _ := json.Marshal(doc[w.key]); string(value) != w.value || sources[w.key] != w.source {
				t.Errorf("%s = %s from %v, want %s from %s", w.key, value, sources[w.key], w.value, w.source)
			}
		}
		if doc["publish_token"] != "s3cret-t0ken" {
			t.Errorf("--show-secrets: publish_token = %v", doc["publish_token"])
		}
	})
}

// TestConfigExampleRoundTrip loads the example of each format back: it
// gives the defaults, and passes wsd check.
func TestConfigExampleRoundTrip(t *testing.T) {
	defaults := configValues(t, nil)
	dir := t.TempDir()
	for _, format := range []string{"toml", "yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			r := wsd(t, nil, "config", "--example", "--format", format)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("wsd config --example: status %d, stderr %q", r.code, r.stderr)
			}
			if format != "json" && !strings.Contains(r.stdout, "# Largest incoming WebSocket message") {
				t.Errorf("the example does not document max_msg_size:\n%s", r.stdout)
			}
			file := filepath.Join(dir, "example."+format)
			if err := os.WriteFile(file, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := configValues(t, nil, "-c", file); !reflect.DeepEqual(got, defaults) {
				t.Errorf("the %s example loads as\n%v\nwant the defaults\n%v", format, got, defaults)
			}
			r = wsd(t, nil, "check", "-c", file, "--address", "127.0.0.1", "--port", freePort(t))
			if r.code != 0 || r.stdout != "configuration OK\n" {
				t.Errorf("wsd check of the %s example: status %d, stdout %q, stderr %q", format, r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestConfigFormatsAgree loads equivalent TOML, YAML and JSON files.
func TestConfigFormatsAgree(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"wsd.toml": "port = 8080\nidle_timeout = \"2m\"\ncompression = true\nsubprotocols = [\"chat.v2\", \"chat\"]\nmax_msg_size = 1048576\n",
		"wsd.yaml": "port: 8080\nidle_timeout: 2m\ncompression: true\nsubprotocols: [chat.v2, chat]\nmax_msg_size: 1048576\n",
		"wsd.yml":  "port: 8080\nidle_timeout: \"120s\"\ncompression: true\nsubprotocols:\n  - chat.v2\n  - chat\nmax_msg_size: 1048576\n",
		"wsd.json": `{"port": 8080, "idle_timeout": "2m0s", "compression": true, "subprotocols": ["chat.v2", "chat"], "max_msg_size": 1048576}`,
	})
	want := configValues(t, nil, "-c", filepath.Join(dir, "wsd.toml"))
	if want["port"] != 8080.0 || want["idle_timeout"] != "2m0s" {
		t.Fatalf("the TOML file loads as %v", want)
	}
	for _, name := range []string{"wsd.yaml", "wsd.yml", "wsd.json"} {
		if got := configValues(t, nil, "-c", filepath.Join(dir, name)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s loads as\n%v\nwant, as the TOML file,\n%v", name, got, want)
		}
	}
}

// TestUnknownKeySuggestion: a misspelt key is an error naming the closest
// setting, in every format.
func TestUnknownKeySuggestion(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"wsd.toml": "prot = 8080\n",
		"wsd.yaml": "prot: 8080\n",
		"wsd.json": `{"prot": 8080}`,
	}
	writeFiles(t, dir, files)
	for name := range files {
		for _, cmd := range []string{"check", "config", "serve"} {
			file := filepath.Join(dir, name)
			r := wsd(t, nil, cmd, "-c", file)
			if r.code != 2 || !strings.Contains(r.stderr, "wsd: config file "+file+": ") ||
				!strings.Contains(r.stderr, `unknown key "prot" (did you mean "port"?)`) {
				t.Errorf("wsd %s -c %s = status %d, stderr %q; want 2 and the suggestion", cmd, name, r.code, r.stderr)
			}
		}
	}
}

func TestConfigUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"config", "--format", "xml"}, `wsd: --format = "xml": must be toml, yaml or json`},
		{[]string{"config", "--example", "--port", "1"}, "wsd: --example writes the defaults and takes no --port"},
		{[]string{"config", "extra"}, `wsd: unknown command "extra" for "wsd config"`},
		{[]string{"check", "--prot", "1"}, "wsd: unknown flag: --prot"},
	}
	for _, tt := range tests {
		r := wsd(t, nil, tt.args...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, tt.want) || r.stdout != "" {
			t.Errorf("wsd %q = status %d, stdout %q, stderr %q; want 2, nothing, %q", tt.args, r.code, r.stdout, r.stderr, tt.want)
		}
	}
}

func TestHelpListsNewCommands(t *testing.T) {
	r := wsd(t, nil, "help")
	for _, want := range []string{"check", "config", "wsd config --example"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("wsd help lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, cmd := range []string{"check", "config"} {
		r := wsd(t, nil, cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "--max-msg-size") || !strings.Contains(r.stdout, "--config") {
			t.Errorf("wsd %s --help: status %d, stdout lacks the settings:\n%s", cmd, r.code, r.stdout)
		}
	}
}
