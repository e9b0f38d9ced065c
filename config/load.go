package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// Load returns the configuration described by the flags set on fs, the
// environment env (in the "KEY=value" form of [os.Environ]) and the
// configuration file named by the config setting (--config or WSD_CONFIG),
// over [Default]. Precedence, highest first: flags, environment, file,
// defaults.
//
// fs should have been set up with [AddFlags] and parsed; flags not set on
// the command line are ignored, whatever their defaults. A nil fs means no
// flags. Environment variables other than the WSD_* names of settings are
// ignored (see [UnknownEnv] to warn about them), as are variables set to the
// empty string, so WSD_PORT= in a service file behaves like no WSD_PORT at
// all.
//
// The file is TOML, YAML or JSON according to its extension (see
// [FormatOf]). Load checks syntax only: a value that parses but is out of
// range is left for [Config.Validate]. A key in the file that is not a
// setting is an error. Every problem found is reported, joined with
// [errors.Join]; those in the environment are [*FieldError] values whose
// Field is the variable name, those in the file name the file and, where
// known, the line.
//
// Load may be called again with the same fs to re-read the environment and
// file, as the daemon does on SIGHUP.
func Load(fs *pflag.FlagSet, env []string) (Config, error) {
	c, _, err := LoadSources(fs, env)
	if err != nil {
		return Config{}, err
	}
	return c, nil
}

// A Source is where the value of a setting came from.
type Source struct {
	// Kind is "default", "file", "environment" or "flag".
	Kind string
	// Name is the file, variable or flag that gave the value:
	// "/etc/wsd/wsd.toml", "WSD_PORT", "--port"; "" for a default.
	Name string
}

// The kinds of [Source].
const (
	SourceDefault = "default"
	SourceFile    = "file"
	SourceEnv     = "environment"
	SourceFlag    = "flag"
)

// String returns the source as "default", "file /etc/wsd/wsd.toml",
// "environment WSD_PORT" or "flag --port".
func (s Source) String() string {
	if s.Name == "" {
		return s.Kind
	}
	return s.Kind + " " + s.Name
}

// LoadSources is [Load] that also says where each setting's value came
// from, by flag name ("max-msg-size").
//
// Unlike Load, when err is not nil the returned Config still holds every
// value that could be read, with its source, over the defaults, so that a
// caller such as `wsd check` can go on to validate the rest. A file that
// cannot be read or parsed contributes no value; a file with unknown keys
// contributes its other keys.
func LoadSources(fs *pflag.FlagSet, env []string) (Config, map[string]Source, error) {
	fromEnv, envErr := envValues(env)
	fromFlags, flagErr := flagValues(fs)

	// The file is found through the same layers it sits under.
	c := Default()
	apply(&c, fromEnv)
	apply(&c, fromFlags)
	file := c.File
	var fromFile map[int]reflect.Value
	var fileErr error
	if file != "" {
		fromFile, fileErr = decodeFile(file)
	}

	c = Default()
	sources := make(map[string]Source, len(settings))
	for _, s := range settings {
		sources[s.flag] = Source{Kind: SourceDefault}
	}
	for _, layer := range []struct {
		vals map[int]reflect.Value
		src  func(setting) Source
	}{
		{fromFile, func(setting) Source { return Source{SourceFile, file} }},
		{fromEnv, func(s setting) Source { return Source{SourceEnv, s.env} }},
		{fromFlags, func(s setting) Source { return Source{SourceFlag, "--" + s.flag} }},
	} {
		apply(&c, layer.vals)
		for _, s := range settings {
			if _, ok := layer.vals[s.index]; ok {
				sources[s.flag] = layer.src(s)
			}
		}
	}
	return c, sources, errors.Join(fileErr, envErr, flagErr)
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

// reservedEnv lists the WSD_* variables that wsd sets for itself and that
// are not settings: the state and channels a master hands over to the new
// binary on SIGUSR2 (package master). A test keeps it in step with master.
var reservedEnv = []string{"WSD_UPGRADE_STATE", "WSD_UPGRADE_CHANNELS"}

// UnknownEnv returns a warning for every variable in env (in the form of
// [os.Environ]) that starts with WSD_ but is not a setting, such as
//
//	WSD_PROCESES is not a wsd setting; did you mean WSD_PROCESSES?
//
// [Load] ignores such variables; a caller should show the warnings, since a
// misspelt name otherwise leaves its setting silently at another value.
func UnknownEnv(env []string) []string {
	known := make(map[string]bool, len(settings)+len(reservedEnv))
	flags := make([]string, 0, len(settings))
	for _, s := range settings {
		known[s.env] = true
		flags = append(flags, s.flag)
	}
	for _, name := range reservedEnv {
		known[name] = true
	}
	var warnings []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "WSD_") || known[name] || slices.ContainsFunc(warnings, func(w string) bool {
			return strings.HasPrefix(w, name+" ")
		}) {
			continue
		}
		w := name + " is not a wsd setting"
		if flag := closest(strings.TrimPrefix(name, "WSD_"), flags); flag != "" {
			w += "; did you mean " + EnvName(flag) + "?"
		}
		warnings = append(warnings, w)
	}
	return warnings
}
