package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses of the wsd command.
const (
	exitOK      = 0 // success, including a graceful stop
	exitFailure = 1 // the server could not start or stopped on an error
	exitUsage   = 2 // bad command line, environment or configuration file
)

// exitError gives err a particular exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wsd",
		Short: "A pre-forking HTTP and WebSocket server",
		Long: `wsd serves HTTP and WebSocket clients from a pool of worker processes.

"wsd serve" starts a master process that binds the listening address and runs
one worker per --processes (one per CPU with 0). Each worker answers
GET / with "Hello World!", echoes every WebSocket message sent to /, and
relays messages sent to /broadcast to every other /broadcast client of the
same worker.

Settings come from flags, WSD_* environment variables (WSD_PORT for --port,
WSD_MAX_MSG_SIZE for --max-msg-size, ...) and an optional TOML, YAML or JSON
file named by --config or WSD_CONFIG; flags override the environment, which
overrides the file. "wsd serve --help" lists every setting, "wsd check" checks
them without serving, "wsd config" prints them with where each came from, and
"wsd config --example" writes a commented starting file. "wsd health" asks a
running wsd whether it serves (exit 0) or not (exit 1), for container health
checks; "wsd completion bash|zsh|fish|powershell" prints a shell completion
script.

Signals to the master: SIGTERM or SIGINT stop gracefully (a second one, or
SIGQUIT, stops at once); SIGHUP re-reads the environment and file and replaces
the workers one at a time; SIGUSR2 also replaces the wsd binary.

Exit status: 0 after a clean stop, 1 if the server failed, 2 for a bad
command line or configuration.`,
		// Errors are printed once, by run, as "wsd: message"; a usage dump
		// would bury a configuration error.
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       release(),
	}
	root.SetVersionTemplate(versionLine() + "\n")
	root.AddCommand(newServeCmd(), newCheckCmd(), newConfigCmd(), newHealthCmd(), newVersionCmd(), newWorkerCmd(), newManCmd())
	root.AddCommand(newReloadCmd())
	return root
}

// run executes the wsd command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)

	// Cobra reports a bad flag, an unknown command or wrong arguments
	// before any command runs; errors from that stage are usage errors,
	// worth a pointer to the help.
	started := false
	root.PersistentPreRun = func(*cobra.Command, []string) { started = true }

	cmd, err := root.ExecuteContextC(context.Background())
	if err == nil {
		return exitOK
	}
	code := exitFailure
	if !started {
		code = exitUsage
	}
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	// A joined error (several bad settings) gets one prefixed line each.
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(stderr, "wsd: %s\n", line)
	}
	if !started {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}
