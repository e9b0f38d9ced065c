package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"
)

// The configuration file formats.
const (
	FormatTOML = "toml"
	FormatYAML = "yaml"
	FormatJSON = "json"
)

// Formats lists the configuration file formats, the default first.
var Formats = []string{FormatTOML, FormatYAML, FormatJSON}

// FormatOf returns the format of the configuration file name by its
// extension: FormatYAML for .yaml and .yml, FormatJSON for .json and
// FormatTOML for anything else, .toml included.
func FormatOf(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return FormatYAML
	case ".json":
		return FormatJSON
	}
	return FormatTOML
}

// jsonCommentKeys are the top-level keys a JSON file may hold besides the
// settings, and which are ignored: JSON has no comments, so `wsd config`
// writes the documentation of an example in "_doc" and the source of each
// effective value in "_sources".
var jsonCommentKeys = []string{"_doc", "_sources"}

// decodeFile reads the configuration file name and returns the settings it
// gives, by field index. Each problem found is an error naming the file.
func decodeFile(name string) (map[int]reflect.Value, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var vals map[int]reflect.Value
	var errs []error
	switch FormatOf(name) {
	case FormatYAML:
		vals, errs = decodeYAML(data)
	case FormatJSON:
		vals, errs = decodeJSON(data)
	default:
		vals, errs = decodeTOML(data)
	}
	for i, err := range errs {
		errs[i] = fmt.Errorf("config file %s: %w", name, err)
	}
	return vals, errors.Join(errs...)
}

// fileKeys maps each file key to its setting.
var fileKeys = func() map[string]setting {
	m := make(map[string]setting, len(settings))
	for _, s := range settings {
		if s.key != "" {
			m[s.key] = s
		}
	}
	return m
}()

// unknownKey reports the file key k that is no setting, suggesting the
// closest one.
func unknownKey(k string) error {
	keys := make([]string, 0, len(settings))
	for _, s := range settings {
		if s.key != "" {
			keys = append(keys, s.key)
		}
	}
	if c := closest(k, keys); c != "" {
		return fmt.Errorf("unknown key %q (did you mean %q?)", k, c)
	}
	return fmt.Errorf("unknown key %q", k)
}

// decodeTOML returns the settings in the TOML document data. A document
// that does not parse gives no settings; one with unknown keys or bad
// values gives the others.
func decodeTOML(data []byte) (map[int]reflect.Value, []error) {
	c := Default()
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return nil, []error{err}
	}

	// The toml package matches keys to fields case-insensitively and
	// reports tables and their keys separately; only exact top-level keys
	// are settings, and each unknown one is reported once.
	var unknown []string
	for _, k := range md.Keys() {
		if _, ok := fileKeys[k[0]]; !ok && !slices.Contains(unknown, k[0]) {
			unknown = append(unknown, k[0])
		}
	}
	for _, k := range md.Undecoded() {
		if !slices.Contains(unknown, k[0]) {
			unknown = append(unknown, k.String())
		}
	}
	var out []error
	for _, k := range unknown {
		out = append(out, unknownKey(k))
	}

	vals := make(map[int]reflect.Value)
	rv := reflect.ValueOf(c)
	for _, s := range settings {
		if s.key == "" || !md.IsDefined(s.key) {
			continue
		}
		// The toml package reads an integer as a count of nanoseconds, so
		// "shutdown_timeout = 10" would silently mean 10ns; insist on a unit.
		if s.typ == durationType && md.Type(s.key) != "String" {
			out = append(out, &FieldError{
				Field:  s.key,
				Value:  rv.Field(s.index).Int(),
				Reason: `must be a string with a unit, such as "10s"`,
			})
			continue
		}
		vals[s.index] = rv.Field(s.index)
	}
	return vals, out
}

// decodeYAML returns the settings in the YAML document data, which must be
// a mapping of setting keys. Each key is checked against the settings and
// its value decoded to the setting's type on its own, so that every problem
// is reported with its key and line.
func decodeYAML(data []byte) (map[int]reflect.Value, []error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil // an empty document sets nothing
	} else if err != nil {
		return nil, []error{err}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, []error{errors.New("yaml: the file must hold one document")}
	}
	root := doc.Content[0]
	if root.ShortTag() == "!!null" {
		return nil, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, []error{fmt.Errorf("line %d: yaml: the document must be a mapping of keys to values, such as \"port: 3000\"", root.Line)}
	}

	vals := make(map[int]reflect.Value)
	var errs []error
	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		key := kn.Value
		lineErr := func(err error) { errs = append(errs, fmt.Errorf("line %d: %w", kn.Line, err)) }
		if first, dup := seen[key]; dup {
			lineErr(fmt.Errorf("key %q is already set on line %d", key, first))
			continue
		}
		seen[key] = kn.Line
		s, ok := fileKeys[key]
		if !ok || kn.Kind != yaml.ScalarNode {
			lineErr(unknownKey(key))
			continue
		}
		raw := yamlText(vn)
		bad := func(reason string) { lineErr(&FieldError{Field: key, Value: raw, Reason: reason}) }
		switch {
		case vn.ShortTag() == "!!null":
			bad("has no value")
		case s.typ == durationType:
			if vn.Kind != yaml.ScalarNode || vn.ShortTag() != "!!str" {
				bad(`must be a string with a unit, such as "10s"`)
				continue
			}
			d, err := time.ParseDuration(vn.Value)
			if err != nil {
				bad(`must be a duration such as "10s" or "1m30s"`)
				continue
			}
			vals[s.index] = reflect.ValueOf(d)
		default:
			v := reflect.New(s.typ)
			if err := vn.Decode(v.Interface()); err != nil {
				bad(typeReason(s.typ))
				continue
			}
			vals[s.index] = v.Elem()
		}
	}
	return vals, errs
}

// yamlText shows the value of n as it was written, for error messages.
func yamlText(n *yaml.Node) rawValue {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			return rawValue(fmt.Sprintf("%q", n.Value))
		}
		return rawValue(n.Value)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return rawValue(n.Value)
}

// A rawValue is a value as written in a file, shown unquoted by
// [FieldError.Error].
type rawValue string

// decodeJSON returns the settings in the JSON document data, which must be
// an object of setting keys. Like decodeYAML, it checks each key and decodes
// its value on its own. encoding/json alone would match keys regardless of
// case and stop at the first unknown one.
func decodeJSON(data []byte) (map[int]reflect.Value, []error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	atLine := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("line %d: json: %w", lineAt(data, se.Offset), err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("json: unexpected end of file")
		}
		return fmt.Errorf("json: %w", err)
	}

	if tok, err := dec.Token(); err != nil {
		return nil, []error{atLine(err)}
	} else if tok != json.Delim('{') {
		return nil, []error{errors.New(`json: the document must be an object of keys and values, such as {"port": 3000}`)}
	}
	type entry struct {
		key  string
		line int
		raw  json.RawMessage
	}
	var entries []entry
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, []error{atLine(err)}
		}
		e := entry{key: tok.(string), line: lineAt(data, dec.InputOffset())}
		if err := dec.Decode(&e.raw); err != nil {
			return nil, []error{atLine(err)}
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, []error{atLine(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, []error{fmt.Errorf("line %d: json: unexpected data after the top-level object", lineAt(data, dec.InputOffset()))}
	}

	vals := make(map[int]reflect.Value)
	var errs []error
	seen := make(map[string]int)
	for _, e := range entries {
		lineErr := func(err error) { errs = append(errs, fmt.Errorf("line %d: %w", e.line, err)) }
		if first, dup := seen[e.key]; dup {
			lineErr(fmt.Errorf("key %q is already set on line %d", e.key, first))
			continue
		}
		seen[e.key] = e.line
		if slices.Contains(jsonCommentKeys, e.key) {
			continue
		}
		s, ok := fileKeys[e.key]
		if !ok {
			lineErr(unknownKey(e.key))
			continue
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, e.raw)
		bad := func(reason string) {
			lineErr(&FieldError{Field: e.key, Value: rawValue(compact.String()), Reason: reason})
		}
		switch {
		case string(e.raw) == "null":
			bad("has no value")
		case s.typ == durationType:
			var text string
			if json.Unmarshal(e.raw, &text) != nil {
				bad(`must be a string with a unit, such as "10s"`)
				continue
			}
			d, err := time.ParseDuration(text)
			if err != nil {
				bad(`must be a duration such as "10s" or "1m30s"`)
				continue
			}
			vals[s.index] = reflect.ValueOf(d)
		default:
			v := reflect.New(s.typ)
			if err := json.Unmarshal(e.raw, v.Interface()); err != nil {
				bad(typeReason(s.typ))
				continue
			}
			vals[s.index] = v.Elem()
		}
	}
	return vals, errs
}

// lineAt returns the line of data that byte offset falls on, counting from 1.
func lineAt(data []byte, offset int64) int {
	offset = min(max(offset, 0), int64(len(data)))
	return 1 + bytes.Count(data[:offset], []byte("\n"))
}

// typeReason says what a value of type t must be, to follow "key = value: ".
func typeReason(t reflect.Type) string {
	switch {
	case t.Kind() == reflect.Bool:
		return "must be true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "must be an integer"
	case t.Kind() == reflect.Slice:
		return "must be a list of strings"
	default:
		return "must be a string"
	}
}
