package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// envLiteral matches a WSD_* name in Go source.
var envLiteral = regexp.MustCompile(`"(WSD_[A-Z0-9_]+)`)

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]string{
		"wsd.toml":          FormatTOML,
		"/etc/wsd/wsd.yaml": FormatYAML,
		"wsd.yml":           FormatYAML,
		"WSD.YML":           FormatYAML,
		"wsd.json":          FormatJSON,
		"wsd.conf":          FormatTOML,
		"wsd":               FormatTOML,
		"":                  FormatTOML,
	} {
		if got := FormatOf(name); got != want {
			t.Errorf("FormatOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestLoadFormatsAgree loads the same settings written in each format.
func TestLoadFormatsAgree(t *testing.T) {
	files := map[string]string{
		"wsd.toml": `
# a comment
port = 8080
processes = 0
max_msg_size = 1099511627776
shutdown_timeout = "1m30s"
compression = true
allowed_origins = ["https://example.com", "https://*.example.com"]
subprotocols = []
public = "/srv/www"
log_level = "debug"
`,
		"wsd.yaml": `
# a comment
port: 8080
processes: 0
max_msg_size: 1099511627776
shutdown_timeout: 1m30s
compression: true
allowed_origins:
  - https://example.com
  - "https://*.example.com"
subprotocols: []
public: /srv/www
log_level: 'debug'
`,
		"wsd.yml": `{port: 8080, processes: 0, max_msg_size: 1099511627776, shutdown_timeout: "1m30s", compression: true,
  allowed_origins: [https://example.com, "https://*.example.com"], subprotocols: [], public: /srv/www, log_level: debug}`,
		"wsd.json": `{
  "port": 8080,
  "processes": 0,
  "max_msg_size": 1099511627776,
  "shutdown_timeout": "1m30s",
  "compression": true,
  "allowed_origins": ["https://example.com", "https://*.example.com"],
  "subprotocols": [],
  "public": "/srv/www",
  "log_level": "debug",
  "_doc": {"port": "ignored"},
  "_sources": {}
}`,
	}
	want := Default()
	want.Port, want.Processes, want.MaxMsgSize, want.ShutdownTimeout = 8080, 0, 1<<40, 90*time.Second
	want.Compression, want.AllowedOrigins, want.Subprotocols = true, []string{"https://example.com", "https://*.example.com"}, []string{}
	want.Public, want.LogLevel = "/srv/www", "debug"
	for name, text := range files {
		t.Run(name, func(t *testing.T) {
			file := writeNamedFile(t, name, text)
			c, sources, err := LoadSources(newFlags(t, "--config", file), nil)
			if err != nil {
				t.Fatal(err)
			}
			want.File = file
			if !reflect.DeepEqual(c, want) {
				t.Errorf("Load(%s) =\n%+v\nwant\n%+v", name, c, want)
			}
			if got := sources["port"]; got != (Source{SourceFile, file}) {
				t.Errorf("source of port = %v, want the file", got)
			}
			if got := sources["address"]; got != (Source{Kind: SourceDefault}) {
				t.Errorf("source of address = %v, want default", got)
			}
		})
	}
}

// TestLoadFileErrorsEveryFormat checks that YAML and JSON files are read as
// strictly as TOML ones, and that each problem names its key and line.
func TestLoadFileErrorsEveryFormat(t *testing.T) {
	tests := []struct {
		name string // the file name gives the format
		text string
		want []string // one substring per error line
	}{
		{"wsd.toml", "port = 1\nprot = 2\n", []string{`unknown key "prot" (did you mean "port"?)`}},
		{"wsd.yaml", "port: 1\nprot: 2\n", []string{`line 2: unknown key "prot" (did you mean "port"?)`}},
		{"wsd.json", "{\"port\": 1,\n\"prot\": 2}", []string{`line 2: unknown key "prot" (did you mean "port"?)`}},

		{"wsd.toml", "max-msg-size = 1\nlog_levle = \"x\"\nzzz = 1\n", []string{
			`unknown key "max-msg-size" (did you mean "max_msg_size"?)`,
			`unknown key "log_levle" (did you mean "log_level"?)`,
			`unknown key "zzz"`,
		}},
		{"wsd.yaml", "max-msg-size: 1\nlog_levle: x\nzzz: 1\n", []string{
			`line 1: unknown key "max-msg-size" (did you mean "max_msg_size"?)`,
			`line 2: unknown key "log_levle" (did you mean "log_level"?)`,
			`line 3: unknown key "zzz"`,
		}},
		{"wsd.json", `{"max-msg-size": 1, "log_levle": "x", "zzz": 1}`, []string{
			`line 1: unknown key "max-msg-size" (did you mean "max_msg_size"?)`,
			`line 1: unknown key "log_levle" (did you mean "log_level"?)`,
			`line 1: unknown key "zzz"`,
		}},

		// encoding/json alone would take "Port" for "port".
		{"wsd.json", `{"Port": 1}`, []string{`unknown key "Port" (did you mean "port"?)`}},
		{"wsd.yaml", "Port: 1\n", []string{`unknown key "Port" (did you mean "port"?)`}},
		{"wsd.yaml", "server:\n  port: 1\n", []string{`line 1: unknown key "server"`}},
		{"wsd.yaml", "config: x.yaml\n", []string{`unknown key "config"`}},
		{"wsd.yaml", "_doc: {}\n", []string{`unknown key "_doc"`}},

		{"wsd.yaml", "port: \"3000\"\n", []string{`line 1: port = "3000": must be an integer`}},
		{"wsd.json", `{"port": "3000"}`, []string{`line 1: port = "3000": must be an integer`}},
		{"wsd.json", `{"port": 1.5}`, []string{`port = 1.5: must be an integer`}},
		{"wsd.yaml", "port: 99999999999999999999\n", []string{`port = 99999999999999999999: must be an integer`}},
		{"wsd.yaml", "compression: maybe\n", []string{`compression = maybe: must be true or false`}},
		{"wsd.json", `{"compression": 1}`, []string{`compression = 1: must be true or false`}},
		{"wsd.yaml", "allowed_origins: https://a.example\n", []string{`allowed_origins = https://a.example: must be a list of strings`}},
		{"wsd.json", `{"allowed_origins": "x"}`, []string{`allowed_origins = "x": must be a list of strings`}},
		{"wsd.json", `{"public": ["x"]}`, []string{`public = ["x"]: must be a string`}},
		{"wsd.yaml", "port:\n", []string{`port = : has no value`}},
		{"wsd.json", `{"port": null}`, []string{`port = null: has no value`}},

		{"wsd.yaml", "idle_timeout: 60\n", []string{`idle_timeout = 60: must be a string with a unit, such as "10s"`}},
		{"wsd.json", `{"idle_timeout": 60}`, []string{`idle_timeout = 60: must be a string with a unit, such as "10s"`}},
		{"wsd.toml", "idle_timeout = 60\n", []string{`idle_timeout = 60: must be a string with a unit, such as "10s"`}},
		{"wsd.yaml", "idle_timeout: \"60\"\n", []string{`idle_timeout = "60": must be a duration such as "10s"`}},
		{"wsd.json", `{"idle_timeout": "soon"}`, []string{`idle_timeout = "soon": must be a duration such as "10s"`}},

		{"wsd.yaml", "port: 1\nport: 2\n", []string{`line 2: key "port" is already set on line 1`}},
		{"wsd.json", "{\"port\": 1,\n \"port\": 2}", []string{`line 2: key "port" is already set on line 1`}},

		{"wsd.yaml", "port: [\n", []string{"yaml:"}},
		{"wsd.yaml", "- port\n", []string{"line 1: yaml: the document must be a mapping"}},
		{"wsd.yaml", "port: 1\n---\nport: 2\n", []string{"must hold one document"}},
		{"wsd.json", "{\n\"port\": 1,\n}", []string{"line 3: json: invalid character '}'"}},
		{"wsd.json", "", []string{"json: unexpected end of file"}},
		{"wsd.json", `{"port": 1`, []string{"json: unexpected end of file"}},
		{"wsd.json", `[1]`, []string{"json: the document must be an object"}},
		{"wsd.json", `{"port": 1} {}`, []string{"json: unexpected data after the top-level object"}},

		{"wsd.yaml", "port: \"1\"\nprot: 2\nidle_timeout: 5\n", []string{
			`line 1: port = "1": must be an integer`,
			`line 2: unknown key "prot"`,
			`line 3: idle_timeout = 5: must be a string with a unit`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+tt.text, func(t *testing.T) {
			file := writeNamedFile(t, tt.name, tt.text)
			_, err := Load(newFlags(t, "--config", file), nil)
			if err == nil {
				t.Fatalf("Load(%q) = nil error", tt.text)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Load reported %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], "config file "+file+": ") || !strings.Contains(lines[i], want) {
					t.Errorf("problem %d = %q, want it to name the file and contain %q", i+1, lines[i], want)
				}
			}
		})
	}
}

func TestLoadEmptyFiles(t *testing.T) {
	for name, text := range map[string]string{
		"wsd.toml": "",
		"wsd.yaml": "",
		"a.yaml":   "# only a comment\n",
		"b.yaml":   "---\n",
		"wsd.json": "{}",
	} {
		c, err := Load(newFlags(t, "--config", writeNamedFile(t, name, text)), nil)
		if err != nil {
			t.Errorf("Load(%s %q) = %v", name, text, err)
			continue
		}
		c.File = ""
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Load(%s %q) = %+v, want the defaults", name, text, c)
		}
	}
}

func TestLoadSources(t *testing.T) {
	file := writeNamedFile(t, "wsd.yaml", "port: 1001\ntimeout: 20\nlog_level: debug\n")
	c, sources, err := LoadSources(
		newFlags(t, "--port", "3003"),
		[]string{"WSD_CONFIG=" + file, "WSD_TIMEOUT=30", "WSD_PROCESSES=0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3003 || c.Timeout != 30 || c.LogLevel != "debug" || c.Processes != 0 {
		t.Errorf("got port %d, timeout %d, log level %q, processes %d", c.Port, c.Timeout, c.LogLevel, c.Processes)
	}
	for flag, want := range map[string]string{
		"port":      "flag --port",
		"timeout":   "environment WSD_TIMEOUT",
		"processes": "environment WSD_PROCESSES",
		"log-level": "file " + file,
		"address":   "default",
		"config":    "environment WSD_CONFIG",
	} {
		if got := sources[flag].String(); got != want {
			t.Errorf("source of %s = %q, want %q", flag, got, want)
		}
	}
	if len(sources) != len(settings) {
		t.Errorf("%d sources for %d settings", len(sources), len(settings))
	}
}

// TestLoadSourcesPartial checks that a configuration with errors still
// holds what could be read, for wsd check to validate.
func TestLoadSourcesPartial(t *testing.T) {
	file := writeNamedFile(t, "wsd.toml", "timeout = 300\nprot = 1\n")
	c, _, err := LoadSources(newFlags(t, "--config", file, "--port", "0"), []string{"WSD_MAX_MSG_SIZE=x", "WSD_LOG_LEVEL=debug"})
	if err == nil || !strings.Contains(err.Error(), `unknown key "prot"`) || !strings.Contains(err.Error(), "WSD_MAX_MSG_SIZE") {
		t.Errorf("LoadSources error = %v, want the file's and the environment's", err)
	}
	if c.Timeout != 300 || c.Port != 0 || c.LogLevel != "debug" || c.MaxMsgSize != Default().MaxMsgSize {
		t.Errorf("LoadSources = timeout %d, port %d, log level %q, max-msg-size %d; want what could be read", c.Timeout, c.Port, c.LogLevel, c.MaxMsgSize)
	}
	if c, err := Load(newFlags(t, "--config", file), nil); err == nil || !reflect.DeepEqual(c, Config{}) {
		t.Errorf("Load = %+v, %v; want the zero Config and an error", c, err)
	}
}

func TestUnknownEnv(t *testing.T) {
	tests := []struct {
		env  []string
		want []string
	}{
		{[]string{"WSD_PORT=1", "HOME=/root", "WSD_CONFIG=x", "WSD_UPGRADE_STATE={}", "WSD_UPGRADE_CHANNELS={}"}, nil},
		{[]string{"WSD_PROCESES=4"}, []string{"WSD_PROCESES is not a wsd setting; did you mean WSD_PROCESSES?"}},
		{[]string{"WSD_PROT=80", "WSD_MAXMSGSIZE=1"}, []string{
			"WSD_PROT is not a wsd setting; did you mean WSD_PORT?",
			"WSD_MAXMSGSIZE is not a wsd setting; did you mean WSD_MAX_MSG_SIZE?",
		}},
		{[]string{"WSD_log_level=debug"}, []string{"WSD_log_level is not a wsd setting; did you mean WSD_LOG_LEVEL?"}},
		{[]string{"WSD_SHUTDOWN_TIMEOUT_SECONDS=1"}, []string{"WSD_SHUTDOWN_TIMEOUT_SECONDS is not a wsd setting; did you mean WSD_SHUTDOWN_TIMEOUT?"}},
		{[]string{"WSD_FOO=1"}, []string{"WSD_FOO is not a wsd setting"}},
		{[]string{"WSD_NOPE=", "WSD_NOPE=again", "WSD_"}, []string{"WSD_NOPE is not a wsd setting", "WSD_ is not a wsd setting"}},
		{[]string{"XWSD_PROT=1", "wsd_port=1"}, nil},
	}
	for _, tt := range tests {
		got := UnknownEnv(tt.env)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("UnknownEnv(%q) =\n%q\nwant\n%q", tt.env, got, tt.want)
		}
	}
}

// TestReservedEnv keeps reservedEnv in step with the WSD_* variables that
// the master sets for itself, so that they never draw a warning.
func TestReservedEnv(t *testing.T) {
	known := make(map[string]bool)
	for _, s := range settings {
		known[s.env] = true
	}
	for _, name := range reservedEnv {
		known[name] = true
	}
	for _, dir := range []string{"../master", "../worker"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			text, err := os.ReadFile(dir + "/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range envLiteral.FindAllStringSubmatch(string(text), -1) {
				if !known[m[1]] {
					t.Errorf("%s/%s uses %s, which is no setting: add it to reservedEnv", dir, e.Name(), m[1])
				}
			}
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"port", "processes", "max_msg_size", "timeout", "log_level", "shutdown_timeout"}
	for name, want := range map[string]string{
		"prot":              "port",
		"Port":              "port",
		"PROCESES":          "processes",
		"max-msg-size":      "max_msg_size",
		"maxmsgsize":        "max_msg_size",
		"timout":            "timeout",
		"log-levle":         "log_level",
		"shutdowntimeout":   "shutdown_timeout",
		"a":                 "",
		"server":            "",
		"compression":       "",
		"shutdown_timeouts": "shutdown_timeout",
	} {
		if got := closest(name, keys); got != want {
			t.Errorf("closest(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"port", "port", 0},
		{"prot", "port", 1}, // a swap
		{"port", "ports", 1},
		{"port", "pot", 1},
		{"port", "part", 1},
		{"kitten", "sitting", 3},
		{"", "abc", 3},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.b, tt.a); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.b, tt.a, got, tt.want)
		}
	}
}
