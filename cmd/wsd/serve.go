package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/master"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the server: a master process and its workers",
		Long: `Serve runs the wsd master process, which binds the listening address,
starts the worker processes and supervises them until it is stopped.

Every flag below can also be given as an environment variable, WSD_ followed
by the flag name in capitals with dashes as underscores (--max-msg-size is
WSD_MAX_MSG_SIZE), or as a key in the configuration file named by --config
or WSD_CONFIG, with underscores (max_msg_size = 1048576). The file is TOML,
or YAML (.yaml, .yml) or JSON (.json) by its extension. Flags override the
environment, which overrides the file. Durations take a unit ("10s", "1m30s");
lists are comma separated (arrays in the file). A WSD_* variable that is not
a setting is ignored, with a warning.

On SIGHUP the environment and file are read again, with the same flags, and
the workers are replaced one at a time; a configuration that does not
validate is logged and ignored.

A bad setting stops wsd before it binds anything, with exit status 2 and a
message naming the setting and its value.`,
		Args: cobra.NoArgs,
	}
	config.AddFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		// The same flags are re-applied on every reload so that the
		// command line keeps its precedence over a changed file.
		load := func() (config.Config, error) {
			cfg, err := config.Load(cmd.Flags(), os.Environ())
			if err != nil {
				return config.Config{}, err
			}
			if err := cfg.Validate(); err != nil {
				return config.Config{}, err
			}
			return cfg, nil
		}
		cfg, err := load()
		// A misspelt variable may be why the configuration is bad, so
		// warn first (in text at info level if cfg is the zero Config).
		logger := cfg.Logger(cmd.ErrOrStderr())
		for _, w := range config.UnknownEnv(os.Environ()) {
			logger.Warn(w)
		}
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		return master.Run(cmd.Context(), master.Options{
			Config: cfg,
			Load:   load,
			Logger: logger,
		})
	}
	return cmd
}
