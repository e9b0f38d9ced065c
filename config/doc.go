// Package config holds the settings of the wsd daemon and reads them from
// the places an operator may put them.
//
// A [Config] starts as [Default] and is then overridden, lowest precedence
// first, by an optional configuration file (TOML, YAML or JSON, by its
// extension), by WSD_* environment variables and by command-line flags.
// [AddFlags] registers one flag per setting, [Load] merges the four layers
// ([LoadSources] also says where each value came from), and [Config.Validate]
// checks the result, reporting every bad setting at once as [*FieldError]
// values joined with [errors.Join].
//
// Each setting is described once, by the `flag` and `toml` struct tags of its
// Config field; the environment variable name is derived from the flag name
// ("max-msg-size" is WSD_MAX_MSG_SIZE), and the `toml` key is also the key in
// YAML and JSON files. Adding a setting therefore means adding a tagged
// field, its default in Default, its usage line and its check in Validate,
// then running go generate ./config to update docs/configuration.md.
//
// [Settings] describes every setting for tools: [Write] and [WriteExample]
// write configuration files from it (`wsd config`), and it generates the
// reference docs/configuration.md (go generate ./config), so neither can
// drift from the settings themselves. [UnknownEnv] finds misspelt WSD_*
// variables, and [AvailableCPUs] resolves processes = 0.
//
// Durations are written as Go durations ("10s", "1m30s") everywhere, including
// the file, where they are strings. Lists are comma separated in flags and
// the environment and arrays in the file. Relative paths are relative to
// the working directory of the process, not to the file.
package config

//go:generate go run ./internal/gendoc -o ../docs/configuration.md
