package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// A setting describes one Config field and the names it goes by.
type setting struct {
	index int          // field index in Config
	typ   reflect.Type // field type
	flag  string       // flag name: "max-msg-size"
	key   string       // TOML key: "max_msg_size"; "" when the field is not a file key
	env   string       // environment variable: "WSD_MAX_MSG_SIZE"
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
