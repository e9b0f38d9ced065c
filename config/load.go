package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"
)

// Load returns the configuration described by the flags set on fs, the
// environment env (in the "KEY=value" form of [os.Environ]) and the TOML file
// named by the config setting (--config or WSD_CONFIG), over [Default].
// Precedence, highest first: flags, environment, file, defaults.
//
// fs should have been set up with [AddFlags] and parsed; flags not set on
// the command line are ignored, whatever their defaults. A nil fs means no
// flags. Environment variables other than the WSD_* names of settings are
// ignored, as are variables set to the empty string, so WSD_PORT= in a
// service file behaves like no WSD_PORT at all.
//
// Load checks syntax only: a value that parses but is out of range is left
// for [Config.Validate]. A key in the file that is not a setting is an
// error. Every problem found in the environment is reported, joined with
// [errors.Join], each a [*FieldError] whose Field is the variable name;
// errors in the file name the file and, where known, the line.
//
// Load may be called again with the same fs to re-read the environment and
// file, as the daemon does on SIGHUP.
func Load(fs *pflag.FlagSet, env []string) (Config, error) {
	fromEnv, envErr := envValues(env)
	fromFlags, flagErr := flagValues(fs)
	if err := errors.Join(envErr, flagErr); err != nil {
		return Config{}, err
	}

	// The file is found through the same layers it sits under.
	c := Default()
	apply(&c, fromEnv)
	apply(&c, fromFlags)
	if c.File != "" {
		file := c.File
		c = Default()
		if err := decodeFile(file, &c); err != nil {
			return Config{}, err
		}
		c.File = file
		apply(&c, fromEnv)
		apply(&c, fromFlags)
	}
	return c, nil
}

func apply(c *Config, vals map[int]reflect.Value) {
	rv := reflect.ValueOf(c).Elem()
	for i, v := range vals {
		rv.Field(i).Set(v)
	}
}

// envValues returns the settings given in env, by field index.
func envValues(env []string) (map[int]reflect.Value, error) {
	byName := make(map[string]setting, len(settings))
	for _, s := range settings {
		byName[s.env] = s
	}
	vals := make(map[int]reflect.Value)
	var errs []error
	for _, kv := range env {
		name, text, ok := strings.Cut(kv, "=")
		s, known := byName[name]
		if !ok || !known || text == "" {
			continue
		}
		v, err := parse(s.typ, text)
		if err != nil {
			errs = append(errs, fmt.Errorf("environment: %w",
				&FieldError{Field: name, Value: text, Reason: err.Error()}))
			continue
		}
		// A later duplicate wins, as it does for os.Getenv.
		vals[s.index] = v
	}
	return vals, errors.Join(errs...)
}

func decodeFile(path string, c *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return decodeTOML(path, data, c)
}

// decodeTOML overlays the TOML document data, read from the file name, on c.
// Keys absent from the document leave c's fields as they are.
func decodeTOML(name string, data []byte, c *Config) error {
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return fmt.Errorf("config file %s: %w", name, err)
	}

	var errs []error
	known := make(map[string]setting, len(settings))
	for _, s := range settings {
		if s.key != "" {
			known[s.key] = s
		}
	}
	// The toml package matches keys to fields case-insensitively and
	// reports tables and their keys separately; only exact top-level keys
	// are settings, and each unknown one is reported once.
	var unknown []string
	for _, k := range md.Keys() {
		if _, ok := known[k[0]]; !ok && !slices.Contains(unknown, k[0]) {
			unknown = append(unknown, k[0])
		}
	}
	for _, k := range md.Undecoded() {
		if !slices.Contains(unknown, k[0]) {
			unknown = append(unknown, k.String())
		}
	}
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("config file %s: unknown key %q%s", name, k, suggest(k, known)))
	}

	// The toml package reads an integer as a count of nanoseconds, so
	// "shutdown_timeout = 10" would silently mean 10ns; insist on a unit.
	for _, s := range settings {
		if s.typ == durationType && s.key != "" && md.IsDefined(s.key) && md.Type(s.key) != "String" {
			errs = append(errs, fmt.Errorf("config file %s: %w", name, &FieldError{
				Field:  s.key,
				Value:  reflect.ValueOf(c).Elem().Field(s.index).Int(),
				Reason: `must be a string with a unit, such as "10s"`,
			}))
		}
	}
	return errors.Join(errs...)
}

// suggest returns a hint naming the setting key that k was probably meant to
// be, such as "max_msg_size" for "max-msg-size" or "Port" for "port".
func suggest(k string, known map[string]setting) string {
	norm := strings.ToLower(strings.ReplaceAll(k, "-", "_"))
	if _, ok := known[norm]; ok {
		return fmt.Sprintf(" (did you mean %q?)", norm)
	}
	return ""
}
