package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// newFlags returns a flag set with every setting, parsed from args.
func newFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("wsd", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("Parse(%q) = %v", args, err)
	}
	return fs
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	return writeNamedFile(t, "wsd.toml", text)
}

// writeNamedFile writes text to the file base in a new directory.
func writeNamedFile(t *testing.T, base, text string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), base)
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(newFlags(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load with nothing set = %+v, want Default() %+v", c, Default())
	}
	c, err = Load(nil, []string{"WSD_PORT=1234"})
	if err != nil || c.Port != 1234 {
		t.Errorf("Load(nil, WSD_PORT=1234) = port %d, %v; want 1234, nil", c.Port, err)
	}
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, `
port = 1001
shutdown_timeout = "1s"
allowed_origins = ["https://file.example"]
compression = true
log_level = "debug"
`)
	// summary shows the fields the cases below set, one of each kind.
	summary := func(c Config) string {
		return strings.TrimSpace(fmt.Sprintln(c.Port, c.ShutdownTimeout, c.AllowedOrigins, c.Compression, c.LogLevel, c.File))
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{
			name: "default",
			want: "3000 10s [] false info ",
		},
		{
			name: "file beats default",
			args: []string{"--config", file},
			want: "1001 1s [https://file.example] true debug " + file,
		},
		{
			name: "env beats file",
			args: []string{"--config", file},
			env: []string{"WSD_PORT=2002", "WSD_SHUTDOWN_TIMEOUT=2s", "WSD_ALLOWED_ORIGINS=https://env.example, https://env2.example",
				"WSD_COMPRESSION=false", "WSD_LOG_LEVEL=warn"},
			want: "2002 2s [https://env.example https://env2.example] false warn " + file,
		},
		{
			name: "flag beats env",
			args: []string{"--config", file, "--port", "3003", "--shutdown-timeout=3s", "--allowed-origins", "https://flag.example",
				"--compression=true", "--log-level", "error"},
			env: []string{"WSD_PORT=2002", "WSD_SHUTDOWN_TIMEOUT=2s", "WSD_ALLOWED_ORIGINS=https://env.example",
				"WSD_COMPRESSION=false", "WSD_LOG_LEVEL=warn"},
			want: "3003 3s [https://flag.example] true error " + file,
		},
		{
			name: "file chosen by WSD_CONFIG",
			env:  []string{"WSD_CONFIG=" + file},
			want: "1001 1s [https://file.example] true debug " + file,
		},
		{
			name: "--config beats WSD_CONFIG",
			args: []string{"-c", file},
			env:  []string{"WSD_CONFIG=/nonexistent/wsd.toml"},
			want: "1001 1s [https://file.example] true debug " + file,
		},
		{
			name: "empty variable is unset",
			args: []string{"--config", file},
			env:  []string{"WSD_PORT=", "WSD_LOG_LEVEL=", "WSD_ALLOWED_ORIGINS="},
			want: "1001 1s [https://file.example] true debug " + file,
		},
		{
			name: "later duplicate variable wins, unknown ones are ignored by Load",
			env:  []string{"WSD_PORT=1", "WSD_PORT=2", "WSD_NO_SUCH_SETTING=x", "WSD_LOG_LEVEL", "LOG_LEVEL=debug"},
			want: "2 10s [] false info ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(newFlags(t, tt.args...), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(c); got != strings.TrimSpace(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEverySettingFromEverySource sets each field to a non-default value
// through its flag, its variable and its file key in turn, which checks the
// tag-driven mapping for every field, including ones added later.
func TestEverySettingFromEverySource(t *testing.T) {
	def := reflect.ValueOf(Default())
	for _, s := range settings {
		// tomlText is also valid YAML and JSON.
		var text, tomlText string
		var want any
		switch {
		case s.typ == durationType:
			text, tomlText, want = "7s", `"7s"`, 7*time.Second
		case s.typ.Kind() == reflect.String:
			text, tomlText, want = "sample", `"sample"`, "sample"
		case s.typ.Kind() == reflect.Bool:
			text, tomlText, want = "true", "true", true
		case s.typ.Kind() == reflect.Int:
			text, tomlText, want = "12345", "12345", 12345
		case s.typ.Kind() == reflect.Int64:
			text, tomlText, want = "12345", "12345", int64(12345)
		case s.typ.Kind() == reflect.Slice:
			text, tomlText, want = "a,b", `["a", "b"]`, []string{"a", "b"}
		default:
			t.Fatalf("%s: no sample for type %v; teach this test and parse about it", s.flag, s.typ)
		}
		if reflect.DeepEqual(def.Field(s.index).Interface(), want) {
			t.Fatalf("%s: sample %v equals the default", s.flag, want)
		}
		if _, ok := usage[s.flag]; !ok {
			t.Errorf("%s: no usage line", s.flag)
		}

		sources := map[string]func() (Config, error){
			"flag": func() (Config, error) { return Load(newFlags(t, "--"+s.flag+"="+text), nil) },
			"env":  func() (Config, error) { return Load(newFlags(t), []string{s.env + "=" + text}) },
		}
		if s.key != "" {
			for name, text := range map[string]string{
				"wsd.toml": s.key + " = " + tomlText + "\n",
				"wsd.yaml": s.key + ": " + tomlText + "\n",
				"wsd.json": `{"` + s.key + `": ` + tomlText + "}\n",
			} {
				file := writeNamedFile(t, name, text)
				sources[name] = func() (Config, error) { return Load(newFlags(t, "--config", file), nil) }
			}
		}
		for name, load := range sources {
			if s.flag == "config" {
				continue // sets the file itself; covered by TestLoadPrecedence
			}
			c, err := load()
			if err != nil {
				t.Errorf("%s from %s: %v", s.flag, name, err)
				continue
			}
			if got := reflect.ValueOf(c).Field(s.index).Interface(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s from %s = %v, want %v", s.flag, name, got, want)
			}
		}
	}
}

func TestLoadEnvErrors(t *testing.T) {
	_, err := Load(newFlags(t), []string{
		"WSD_PORT=abc",
		"WSD_SHUTDOWN_TIMEOUT=10",
		"WSD_COMPRESSION=maybe",
		"WSD_MAX_MSG_SIZE=99999999999999999999",
		"WSD_TIMEOUT=40", // fine
	})
	if err == nil {
		t.Fatal("Load = nil error, want one per bad variable")
	}
	for _, want := range []string{
		`WSD_PORT = "abc": must be an integer`,
		`WSD_SHUTDOWN_TIMEOUT = "10": must be a duration such as "10s"`,
		`WSD_COMPRESSION = "maybe": must be true or false`,
		`WSD_MAX_MSG_SIZE = "99999999999999999999": is out of range`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "WSD_TIMEOUT") {
		t.Errorf("error %q blames the good WSD_TIMEOUT", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "WSD_PORT" || fe.Value != "abc" {
		t.Errorf("errors.As gave %+v, want the WSD_PORT FieldError", fe)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"unknown key", "port = 1\nprot = 2\n", []string{`unknown key "prot"`}},
		{"flag spelling", "max-msg-size = 1\n", []string{`unknown key "max-msg-size" (did you mean "max_msg_size"?)`}},
		{"wrong case", "Port = 1\n", []string{`unknown key "Port" (did you mean "port"?)`}},
		{"table", "[server]\nport = 1\n", []string{`unknown key "server"`}},
		{"several", "a = 1\nb = 2\n", []string{`unknown key "a"`, `unknown key "b"`}},
		{"config is no key", "config = \"x.toml\"\n", []string{`unknown key "config"`}},
		{"bad toml", "port = \n", []string{"toml: line 1"}},
		{"wrong type", "port = \"3000\"\n", []string{`line 1 (last key "port")`, "incompatible types"}},
		{"integer duration", "idle_timeout = 60\n", []string{`idle_timeout = 60: must be a string with a unit, such as "10s"`}},
		{"bad duration", "idle_timeout = \"60\"\n", []string{`invalid duration`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, tt.text)
			_, err := Load(newFlags(t, "--config", file), nil)
			if err == nil {
				t.Fatalf("Load(%q) = nil error", tt.text)
			}
			if !strings.Contains(err.Error(), file) {
				t.Errorf("error %q does not name the file", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.toml")
	_, err := Load(newFlags(t), []string{"WSD_CONFIG=" + missing})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load with a missing file = %v, want ErrNotExist naming %s", err, missing)
	}
}

func TestLoadDoesNotValidate(t *testing.T) {
	c, err := Load(newFlags(t, "--port", "70000", "--max-msg-size", "-1"), nil)
	if err != nil {
		t.Fatalf("Load = %v; range checks belong to Validate", err)
	}
	if c.Port != 70000 || c.MaxMsgSize != -1 {
		t.Errorf("Load = port %d, max-msg-size %d; want 70000, -1", c.Port, c.MaxMsgSize)
	}
	err = c.Validate()
	for _, want := range []string{"port = 70000", "max-msg-size = -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

// TestLoadAgain re-reads a changed file with the same flags, as a reload
// does: the file's new values show, the command line still wins.
func TestLoadAgain(t *testing.T) {
	file := writeFile(t, "port = 1001\ntimeout = 10\n")
	fs := newFlags(t, "--config", file, "--timeout", "20")
	c, err := Load(fs, nil)
	if err != nil || c.Port != 1001 || c.Timeout != 20 {
		t.Fatalf("first Load = port %d, timeout %d, %v; want 1001, 20", c.Port, c.Timeout, err)
	}
	if err := os.WriteFile(file, []byte("port = 1002\ntimeout = 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Load(fs, []string{"WSD_TIMEOUT=40"})
	if err != nil || c.Port != 1002 || c.Timeout != 20 {
		t.Fatalf("second Load = port %d, timeout %d, %v; want 1002, 20", c.Port, c.Timeout, err)
	}
}

func TestFlags(t *testing.T) {
	t.Run("bad value names the flag", func(t *testing.T) {
		fs := pflag.NewFlagSet("wsd", pflag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		AddFlags(fs)
		err := fs.Parse([]string{"--port", "abc"})
		if err == nil || !strings.Contains(err.Error(), `"abc" for "-p, --port" flag: must be an integer`) {
			t.Errorf("Parse(--port abc) = %v", err)
		}
	})
	t.Run("list replaces the default, then accumulates", func(t *testing.T) {
		c, err := Load(newFlags(t, "--allowed-origins", "https://a.example,https://b.example", "--allowed-origins=https://c.example"), nil)
		want := []string{"https://a.example", "https://b.example", "https://c.example"}
		if err != nil || !slices.Equal(c.AllowedOrigins, want) {
			t.Errorf("AllowedOrigins = %q, %v; want %q", c.AllowedOrigins, err, want)
		}
	})
	t.Run("bool without value", func(t *testing.T) {
		c, err := Load(newFlags(t, "--compression", "--pubsub-echo=false"), []string{"WSD_PUBSUB_ECHO=1"})
		if err != nil || !c.Compression || c.PubSubEcho {
			t.Errorf("compression %v, pubsub-echo %v, %v; want true, false", c.Compression, c.PubSubEcho, err)
		}
	})
	t.Run("negative value", func(t *testing.T) {
		c, err := Load(newFlags(t, "--max-msg-size", "-1", "-p", "8080"), nil)
		if err != nil || c.MaxMsgSize != -1 || c.Port != 8080 {
			t.Errorf("max-msg-size %d, port %d, %v; want -1, 8080", c.MaxMsgSize, c.Port, err)
		}
	})
	t.Run("help documents every setting", func(t *testing.T) {
		help := newFlags(t).FlagUsages()
		for _, s := range settings {
			if !strings.Contains(help, "--"+s.flag+" ") {
				t.Errorf("help lacks --%s:\n%s", s.flag, help)
			}
		}
		for _, want := range []string{`(default 3000)`, `(default 10s)`, `(default "info")`} {
			if !strings.Contains(help, want) {
				t.Errorf("help lacks %s:\n%s", want, help)
			}
		}
	})
	t.Run("caller's own flags", func(t *testing.T) {
		fs := pflag.NewFlagSet("own", pflag.ContinueOnError)
		fs.Int("port", 0, "")
		fs.StringSlice("allowed-origins", nil, "")
		fs.String("timeout", "", "")
		if err := fs.Parse([]string{"--port=81", "--allowed-origins=x,y"}); err != nil {
			t.Fatal(err)
		}
		c, err := Load(fs, nil)
		if err != nil || c.Port != 81 || !slices.Equal(c.AllowedOrigins, []string{"x", "y"}) {
			t.Errorf("Load = port %d, origins %q, %v", c.Port, c.AllowedOrigins, err)
		}
		if err := fs.Parse([]string{"--timeout=soon"}); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(fs, nil); err == nil || !strings.Contains(err.Error(), `timeout = "soon": must be an integer`) {
			t.Errorf("Load with --timeout=soon = %v", err)
		}
	})
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"port":             "WSD_PORT",
		"max-msg-size":     "WSD_MAX_MSG_SIZE",
		"shutdown-timeout": "WSD_SHUTDOWN_TIMEOUT",
		"allowed-origins":  "WSD_ALLOWED_ORIGINS",
		"config":           "WSD_CONFIG",
	} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

// TestExampleFile keeps the documented example file honest: it loads,
// validates and mentions every file key.
func TestExampleFile(t *testing.T) {
	const name = "testdata/wsd.example.toml"
	c, err := Load(newFlags(t, "--config", name), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if s.key != "" && !strings.Contains(string(text), "\n"+s.key+" = ") && !strings.Contains(string(text), "\n# "+s.key+" = ") {
			t.Errorf("%s does not show the key %s", name, s.key)
		}
	}
}
