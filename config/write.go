package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteOptions control [Write].
type WriteOptions struct {
	// Format is FormatTOML (also when empty), FormatYAML or FormatJSON.
	Format string
	// Sources, as returned by [LoadSources], says where each value came
	// from. After each value, Write writes its source as a comment, or for
	// JSON, which has no comments, in a "_sources" object that [Load]
	// ignores. Nil writes no sources.
	Sources map[string]Source
	// ShowSecrets writes the publish token, the JWT secret and a Redis URL
	// with a password as they are. Otherwise they are left out (commented out in TOML and
	// YAML) and their comment says so.
	ShowSecrets bool
}

// Write writes c to w as a configuration file that [Load] reads back to c,
// secrets aside. Every file key is written, in the order of the Config
// fields; the config setting, which names the file, is noted in a comment.
func Write(w io.Writer, c Config, opts WriteOptions) error {
	f, err := newFileWriter(w, opts.Format)
	if err != nil {
		return err
	}
	rv := reflect.ValueOf(c)
	if f.format != FormatJSON {
		f.comment("The effective configuration of wsd: the defaults, overridden by the " +
			"configuration file, the environment and the flags, in that order.")
		if opts.Sources != nil {
			f.comment("The comment after each value says where it came from.")
		}
		if c.File != "" {
			note := "Read from " + c.File
			if src, ok := opts.Sources["config"]; ok {
				note += ", named by " + src.String()
			}
			f.comment(note + ".")
		}
	}
	sources := make(map[string]string)
	for _, st := range Settings() {
		s := settingOf(st.Key)
		if st.Key == "" {
			continue
		}
		if st.Section != "" {
			f.section(st.Section, false)
		}
		v := rv.Field(s.index)
		src := ""
		if opts.Sources != nil {
			src = opts.Sources[st.Flag].String()
		}
		note := func(text string) {
			if src != "" {
				src += "; "
			}
			src += text
		}
		if st.Flag == "processes" && v.Int() == 0 {
			note(fmt.Sprintf("0 runs %d here, one per available CPU", AvailableCPUs()))
		}
		if !opts.ShowSecrets && isSecret(s, v) {
			note("value hidden, --show-secrets shows it")
			shown := "(hidden)"
			if st.Flag == "redis" {
				shown = quote(redactURL(v.String()))
			}
			f.hidden(st.Key, shown, src)
		} else {
			f.value(st.Key, v, src)
		}
		if src != "" {
			sources[st.Key] = src
		}
	}
	if opts.Sources != nil {
		f.object("_sources", sources)
	}
	return f.close()
}

// WriteExample writes to w a configuration file in format (as for
// [WriteOptions]) that sets every file key to its default, each after a
// comment with its help line, for a starting point. For JSON, which has no
// comments, the help lines go in a "_doc" object, which [Load] ignores.
func WriteExample(w io.Writer, format string) error {
	f, err := newFileWriter(w, format)
	if err != nil {
		return err
	}
	if f.format != FormatJSON {
		f.comment(fmt.Sprintf("wsd configuration file (%s), as written by `wsd config --example`.", strings.ToUpper(f.format)))
		f.comment("")
		f.comment("Every key is optional: a key left out keeps its default, which is the " +
			"value shown here. WSD_* environment variables and command-line flags " +
			"override the file. Durations take a unit (\"10s\", \"1m30s\"). " +
			"`wsd check --config FILE` checks a file before use.")
	}
	docs := make(map[string]string)
	for _, st := range Settings() {
		if st.Key != "" {
			docs[st.Key] = st.Usage
		}
	}
	f.object("_doc", docs)
	def := reflect.ValueOf(Default())
	for _, st := range Settings() {
		if st.Key == "" {
			continue
		}
		if st.Section != "" {
			f.section(st.Section, true)
		}
		f.blank()
		f.comment(st.Usage)
		f.value(st.Key, def.Field(settingOf(st.Key).index), "")
	}
	return f.close()
}

// settingOf returns the setting with the file key key.
func settingOf(key string) setting { return fileKeys[key] }

// isSecret reports whether the value v of s should not be shown unasked.
func isSecret(s setting, v reflect.Value) bool {
	switch s.flag {
	case "publish-token", "jwt-secret":
		return v.String() != ""
	case "redis":
		u, err := url.Parse(v.String())
		if err != nil {
			return v.String() != ""
		}
		_, ok := u.User.Password()
		return ok
	}
	return false
}

// A fileWriter writes a configuration file in one format. Values and their
// comments go through a tabwriter so that the comments line up.
type fileWriter struct {
	format string
	w      io.Writer
	tw     *tabwriter.Writer
	// JSON only: the members written so far, and objects to add at the end
	// or, for "_doc", at the start.
	members []string
	trailer []string
}

func newFileWriter(w io.Writer, format string) (*fileWriter, error) {
	switch format {
	case "":
		format = FormatTOML
	case FormatTOML, FormatYAML, FormatJSON:
	default:
		return nil, fmt.Errorf("unknown format %q: must be toml, yaml or json", format)
	}
	return &fileWriter{format: format, w: w, tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}, nil
}

// comment writes text as comment lines wrapped at 78 columns; "" writes an
// empty comment line. JSON drops comments.
func (f *fileWriter) comment(text string) {
	if f.format == FormatJSON {
		return
	}
	if text == "" {
		fmt.Fprintln(f.tw, "#")
		return
	}
	for _, line := range wrap(text, 76) {
		fmt.Fprintln(f.tw, "# "+line)
	}
}

func (f *fileWriter) blank() {
	if f.format != FormatJSON {
		fmt.Fprintln(f.tw)
	}
}

// section starts a group of settings.
func (f *fileWriter) section(title string, example bool) {
	if f.format == FormatJSON {
		return
	}
	fmt.Fprintln(f.tw)
	if example {
		fmt.Fprintf(f.tw, "# --- %s ---\n", title)
	} else {
		fmt.Fprintf(f.tw, "# %s\n", title)
	}
}

// value writes key and its value v, followed by the comment note if any.
func (f *fileWriter) value(key string, v reflect.Value, note string) {
	text := fileValue(v)
	switch f.format {
	case FormatJSON:
		f.members = append(f.members, quote(key)+": "+text)
	case FormatYAML:
		f.line(key+": "+text, note)
	default:
		f.line(key+" = "+text, note)
	}
}

// hidden writes key commented out, with shown in place of its value.
func (f *fileWriter) hidden(key, shown, note string) {
	switch f.format {
	case FormatJSON:
	case FormatYAML:
		f.line("# "+key+": "+shown, note)
	default:
		f.line("# "+key+" = "+shown, note)
	}
}

func (f *fileWriter) line(text, note string) {
	if note == "" {
		fmt.Fprintln(f.tw, text)
		return
	}
	fmt.Fprintf(f.tw, "%s\t# %s\n", text, note)
}

// object adds, for JSON only, a member name holding the strings m in the
// order of the settings: "_doc" before the settings, others after.
func (f *fileWriter) object(name string, m map[string]string) {
	if f.format != FormatJSON {
		return
	}
	var b strings.Builder
	b.WriteString(quote(name) + ": {")
	n := 0
	for _, s := range settings {
		text, ok := m[s.key]
		if s.key == "" || !ok {
			continue
		}
		if n > 0 {
			b.WriteString(",")
		}
		n++
		b.WriteString("\n    " + quote(s.key) + ": " + quote(text))
	}
	if n > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}")
	if name == "_doc" {
		f.members = append(f.members, b.String())
	} else {
		f.trailer = append(f.trailer, b.String())
	}
}

func (f *fileWriter) close() error {
	if f.format == FormatJSON {
		members := append(f.members, f.trailer...)
		fmt.Fprintf(f.tw, "{\n  %s\n}\n", strings.Join(members, ",\n  "))
	}
	return f.tw.Flush()
}

// fileValue writes v as a value in a file. The same text serves TOML, YAML
// and JSON: strings are JSON strings, which are also valid TOML basic
// strings and YAML double-quoted scalars, and lists are ["a", "b"].
func fileValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return quote(time.Duration(v.Int()).String())
	case v.Kind() == reflect.String:
		return quote(v.String())
	case v.Kind() == reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = quote(v.Index(i).String())
		}
		return "[" + strings.Join(items, ", ") + "]"
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	default:
		return strconv.FormatInt(v.Int(), 10)
	}
}

// quote returns s as a JSON string, leaving <, > and & alone.
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// wrap breaks text into lines of at most width bytes, between words.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
