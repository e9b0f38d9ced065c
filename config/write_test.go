package config

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sampleConfig returns a Config with every field away from its default,
// strings holding characters that need escaping in each format.
func sampleConfig() Config {
	c := Default()
	rv := reflect.ValueOf(&c).Elem()
	for _, s := range settings {
		f := rv.Field(s.index)
		switch {
		case s.typ == durationType:
			f.SetInt(int64(7*time.Second + 500*time.Millisecond))
		case s.typ.Kind() == reflect.String:
			f.SetString(`sample "q" \ <&> é` + "\t\x01#" + s.key)
		case s.typ.Kind() == reflect.Bool:
			f.SetBool(!f.Bool())
		case s.typ.Kind() == reflect.Slice:
			f.Set(reflect.ValueOf([]string{"a", `b "c", d`}))
		default:
			f.SetInt(12345)
		}
	}
	c.File = ""
	return c
}

func TestWriteRoundTrip(t *testing.T) {
	want := sampleConfig()
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, want, WriteOptions{Format: format, ShowSecrets: true}); err != nil {
				t.Fatal(err)
			}
			file := writeNamedFile(t, "wsd."+format, buf.String())
			got, err := Load(newFlags(t, "--config", file), nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, &buf)
			}
			got.File = ""
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip through %s:\ngot  %+v\nwant %+v\n%s", format, got, want, &buf)
			}
		})
	}
}

func TestWriteHidesSecrets(t *testing.T) {
	c := Default()
	c.PublishToken, c.Redis = "t0ken-s3cret", "redis://user:pa55word@cache:6379/0"
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, c, WriteOptions{Format: format, Sources: map[string]Source{}}); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, secret := range []string{"t0ken-s3cret", "pa55word"} {
				if strings.Contains(out, secret) {
					t.Errorf("output shows %q:\n%s", secret, out)
				}
			}
			if !strings.Contains(out, "--show-secrets") {
				t.Errorf("output does not say how to show the secrets:\n%s", out)
			}
			got, err := Load(newFlags(t, "--config", writeNamedFile(t, "wsd."+format, out)), nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if got.PublishToken != "" || got.Redis != "" {
				t.Errorf("hidden values load back as %q, %q; want them left out", got.PublishToken, got.Redis)
			}
		})
	}
}

func TestWriteSources(t *testing.T) {
	file := writeNamedFile(t, "wsd.toml", "log_level = \"debug\"\n")
	c, sources, err := LoadSources(newFlags(t, "--config", file, "--port", "8080"), []string{"WSD_TIMEOUT=20"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"port":      "8080  # flag --port",
		"timeout":   "20  # environment WSD_TIMEOUT",
		"log_level": `"debug"  # file ` + file,
		"address":   `"0.0.0.0"  # default`,
	}
	for _, format := range []string{FormatTOML, FormatYAML} {
		var buf bytes.Buffer
		if err := Write(&buf, c, WriteOptions{Format: format, Sources: sources}); err != nil {
			t.Fatal(err)
		}
		sep := " = "
		if format == FormatYAML {
			sep = ": "
		}
		for key, rest := range want {
			re := regexp.MustCompile(`(?m)^` + key + sep + regexp.QuoteMeta(strings.Split(rest, "  ")[0]) +
				` +` + regexp.QuoteMeta(strings.Split(rest, "  ")[1]) + `$`)
			if !re.MatchString(buf.String()) {
				t.Errorf("%s output lacks %s%s%s:\n%s", format, key, sep, rest, &buf)
			}
		}
		if !strings.Contains(buf.String(), "# Read from "+file+",") {
			t.Errorf("%s output does not name the file:\n%s", format, &buf)
		}
	}

	var buf bytes.Buffer
	if err := Write(&buf, c, WriteOptions{Format: FormatJSON, Sources: sources}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Port     int               `json:"port"`
		Sources  map[string]string `json:"_sources"`
		LogLevel string            `json:"log_level"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, &buf)
	}
	if doc.Port != 8080 || doc.LogLevel != "debug" {
		t.Errorf("JSON values = %d, %q", doc.Port, doc.LogLevel)
	}
	for key, rest := range want {
		if src := strings.Split(rest, "# ")[1]; doc.Sources[key] != src {
			t.Errorf("_sources[%s] = %q, want %q", key, doc.Sources[key], src)
		}
	}
}

func TestWriteExample(t *testing.T) {
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteExample(&buf, format); err != nil {
				t.Fatal(err)
			}
			file := writeNamedFile(t, "wsd."+format, buf.String())
			c, err := Load(newFlags(t, "--config", file), nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, &buf)
			}
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
			c.File = ""
			if !reflect.DeepEqual(normalize(c), Default()) {
				t.Errorf("example loads as %+v, want the defaults", c)
			}
			out := buf.String()
			for _, s := range Settings() {
				if s.Key == "" {
					continue
				}
				if !strings.Contains(out, "\n"+s.Key+" = ") && !strings.Contains(out, "\n"+s.Key+": ") && !strings.Contains(out, `"`+s.Key+`": `) {
					t.Errorf("example lacks the key %s", s.Key)
				}
				// The help, wrapped in comments or whole in "_doc".
				words := strings.Fields(s.Usage)
				if !strings.Contains(out, strings.Join(words[:min(4, len(words))], " ")) {
					t.Errorf("example lacks the help of %s: %q", s.Key, s.Usage)
				}
			}
			if format == FormatJSON && !json.Valid(buf.Bytes()) {
				t.Errorf("example is not valid JSON:\n%s", out)
			}
		})
	}
}

func TestWriteBadFormat(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, Default(), WriteOptions{Format: "xml"}); err == nil {
		t.Error("Write with format xml = nil error")
	}
	if err := WriteExample(&buf, "ini"); err == nil {
		t.Error("WriteExample with format ini = nil error")
	}
}

func TestSettings(t *testing.T) {
	all := Settings()
	if len(all) != len(settings) {
		t.Fatalf("Settings() has %d entries, want %d", len(all), len(settings))
	}
	if all[0].Section == "" {
		t.Error("the first setting begins no section")
	}
	flags := make(map[string]bool)
	for _, s := range all {
		flags[s.Flag] = true
		if s.Usage == "" || !strings.HasSuffix(s.Usage, ".") || strings.Contains(s.Usage, "`") {
			t.Errorf("%s: usage %q is not a sentence", s.Flag, s.Usage)
		}
		if s.Env != EnvName(s.Flag) {
			t.Errorf("%s: Env = %q", s.Flag, s.Env)
		}
	}
	for flag := range sections {
		if !flags[flag] {
			t.Errorf("sections names %q, which is no setting", flag)
		}
	}
	port := all[1]
	if port.Flag != "port" || port.Short != "p" || port.Key != "port" || port.Type != "int" || port.Default != "3000" {
		t.Errorf("Settings()[1] = %+v", port)
	}
}

func TestSentence(t *testing.T) {
	for in, want := range map[string]string{
		"TCP port to listen on":     "TCP port to listen on.",
		"worker processes to run":   "Worker processes to run.",
		"redis://host:port/db URL":  "redis://host:port/db URL.",
		"host:port for the metrics": "host:port for the metrics.",
		"already a sentence.":       "Already a sentence.",
		"":                          "",
	} {
		if got := sentence(in); got != want {
			t.Errorf("sentence(%q) = %q, want %q", in, got, want)
		}
	}
}
