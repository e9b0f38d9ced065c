package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wsd-server/wsd/config"
)

func newConfigCmd() *cobra.Command {
	var (
		format      string
		example     bool
		showSecrets bool
	)
	cmd := &cobra.Command{
		Use:   "config [--format toml|yaml|json] [--config FILE] [flags]",
		Short: "Print the effective configuration, or an example file",
		Long: `Config loads the configuration exactly as "wsd serve" would, from the same
flags, WSD_* environment variables and file, and prints it as a configuration
file, each value followed by a comment saying where it came from: default,
file, environment WSD_X or flag --x. JSON has no comments, so there the
sources are in a "_sources" object, which wsd ignores when it reads the file.
The output is the configuration as loaded, not checked: "wsd check" checks it.

The format is --format, or else that of the --config file, or else TOML.

The publish token, the JWT secret and a Redis URL with a password are left
out (commented out in TOML and YAML) unless --show-secrets is given.

With --example, config prints instead a commented starting file with every
setting, its description and its default; JSON has no comments, so there
the descriptions are in a "_doc" object, which wsd ignores.

  wsd config --example > /etc/wsd/wsd.toml
  wsd config --example --format yaml > /etc/wsd/wsd.yaml
  wsd config -c /etc/wsd/wsd.toml --format json`,
		Args: cobra.NoArgs,
	}
	config.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&format, "format", "", "output `format`: toml, yaml or json (default: the format of the --config file, else toml)")
	cmd.Flags().BoolVar(&example, "example", false, "print a commented example file with every setting at its default")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print the publish token, JWT secret and Redis password instead of hiding them")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if format != "" && !slices.Contains(config.Formats, format) {
			return &exitError{code: exitUsage, err: &config.FieldError{
				Field: "--format", Value: format, Reason: "must be toml, yaml or json",
			}}
		}
		out := cmd.OutOrStdout()
		if example {
			var set []string
			cmd.Flags().Visit(func(f *pflag.Flag) {
				if f.Name != "example" && f.Name != "format" {
					set = append(set, "--"+f.Name)
				}
			})
			if len(set) > 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("--example writes the defaults and takes no %s", strings.Join(set, ", "))}
			}
			return config.WriteExample(out, format)
		}

		env := os.Environ()
		for _, w := range config.UnknownEnv(env) {
			fmt.Fprintf(cmd.ErrOrStderr(), "wsd: warning: %s\n", w)
		}
		cfg, sources, err := config.LoadSources(cmd.Flags(), env)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if format == "" {
			format = config.FormatOf(cfg.File)
		}
		return config.Write(out, cfg, config.WriteOptions{Format: format, Sources: sources, ShowSecrets: showSecrets})
	}
	return cmd
}
