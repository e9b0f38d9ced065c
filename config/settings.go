package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// A setting describes one Config field and the names it goes by.
type setting struct {
	index int          // field index in Config
	typ   reflect.Type // field type
	flag  string       // flag name: "max-msg-size"
	key   string       // file key: "max_msg_size"; "" when the field is not a file key
	env   string       // environment variable: "WSD_MAX_MSG_SIZE"
}

// A Setting describes one setting for documentation and tools, such as the
// generated configuration reference and `wsd config --example`.
type Setting struct {
	// Flag is the flag name, without the leading dashes: "max-msg-size".
	Flag string
	// Short is the one-letter form of the flag, or "".
	Short string
	// Env is the environment variable: "WSD_MAX_MSG_SIZE".
	Env string
	// Key is the key in a configuration file: "max_msg_size". It is ""
	// for the config setting, which names the file and is not in it.
	Key string
	// Type is the kind of value: "int", "string", "bool", "duration" or
	// "strings" (a list).
	Type string
	// Default is the default value as a flag or variable would spell it:
	// "262144", "10s", "" for an empty string or list.
	Default string
	// Usage is the help line of the flag as a sentence, capitalised and
	// with a full stop.
	Usage string
	// Section is the heading of the group of settings this one begins,
	// such as "WebSocket", or "" if it continues the group before it.
	Section string
}

// sections names the groups of settings, by the flag of the first setting
// of each, in the order of the Config fields.
var sections = map[string]string{
	"address":         "Listening and processes",
	"max-msg-size":    "WebSocket",
	"max-header-size": "HTTP limits",
	"tls-cert":        "TLS",
	"redis":           "Pub/sub",
	"public":          "Static files, administration and logs",
	"config":          "Configuration file",
}

// Settings returns a description of every setting, in the order of the
// Config fields. It is the source of the configuration reference and of
// `wsd config`, so that neither can drift from the settings themselves.
func Settings() []Setting {
	def := reflect.ValueOf(Default())
	out := make([]Setting, len(settings))
	for i, s := range settings {
		out[i] = Setting{
			Flag:    s.flag,
			Short:   shorthand[s.flag],
			Env:     s.env,
			Key:     s.key,
			Type:    typeName(s.typ),
			Default: format(def.Field(s.index)),
			Usage:   sentence(strings.ReplaceAll(usage[s.flag], "`", "")),
			Section: sections[s.flag],
		}
	}
	return out
}

// settings lists every Config field in declaration order. It is derived from
// the struct tags so that a new field needs no other registration.
var settings = describe(reflect.TypeFor[Config]())

var durationType = reflect.TypeFor[time.Duration]()

func describe(t reflect.Type) []setting {
	var out []setting
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if name == "" {
			// A field without a flag could be set by no one; catch it at
			// init rather than let it silently keep its default.
			panic("config: field " + f.Name + " has no flag tag")
		}
		key := f.Tag.Get("toml")
		if key == "-" {
			key = ""
		}
		out = append(out, setting{
			index: i,
			typ:   f.Type,
			flag:  name,
			key:   key,
			env:   EnvName(name),
		})
	}
	return out
}

// EnvName returns the environment variable that sets the flag named flag:
// "WSD_" followed by the name upper-cased with dashes turned into underscores.
func EnvName(flag string) string {
	return "WSD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// sentence returns a help line as a sentence: with a full stop, and
// capitalised unless it starts with a name such as "redis://host" or
// "host:port".
func sentence(s string) string {
	if s == "" {
		return s
	}
	first, _, _ := strings.Cut(s, " ")
	if !strings.ContainsFunc(first, func(r rune) bool { return !unicode.IsLetter(r) }) {
		s = strings.ToUpper(s[:1]) + s[1:]
	}
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// closest returns the candidate nearest to name by edit distance, ignoring
// case and the difference between dashes and underscores, or "" if none is
// close enough to be a likely typo: at most a third of name's length apart,
// and always allowing one typo, so "prot" suggests "port" and "PROCESES"
// suggests "PROCESSES".
func closest(name string, candidates []string) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "_")) }
	n := norm(name)
	best, bestDist := "", max(1, len(n)/3)+1
	for _, c := range candidates {
		if d := editDistance(n, norm(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// the fewest insertions, deletions, substitutions and swaps of adjacent
// bytes that turn one into the other.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// parse converts text, as written in a flag or an environment variable, to a
// value of type t. Its errors are reasons meant to follow "name = value: ".
func parse(t reflect.Type, text string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	switch {
	case t == durationType:
		d, err := time.ParseDuration(strings.TrimSpace(text))
		if err != nil {
			return v, errors.New(`must be a duration such as "10s" or "1m30s"`)
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.String:
		v.SetString(text)
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(text))
		if err != nil {
			return v, errors.New("must be true or false")
		}
		v.SetBool(b)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, t.Bits())
		if errors.Is(err, strconv.ErrRange) {
			return v, errors.New("is out of range")
		}
		if err != nil {
			return v, errors.New("must be an integer")
		}
		v.SetInt(n)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var list []string
		for s := range strings.SplitSeq(text, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		// Reached only if a field of a new kind is added without teaching
		// parse about it; the tests load every field through here.
		panic(fmt.Sprintf("config: cannot parse a %v", t))
	}
	return v, nil
}

// format is the inverse of parse, used to show defaults in flag help.
func format(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}

// typeName is the word flag help shows for a value of type t.
func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Slice:
		return "strings"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "int"
	default:
		return t.Kind().String()
	}
}
