package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/config"
)

func newCheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check [--config FILE] [flags]",
		Short: "Check the configuration without serving",
		Long: `Check loads the configuration exactly as "wsd serve" would, from the same
flags, WSD_* environment variables and file, and checks everything that can be
checked without serving: every value, the TLS certificate and key (readable and
a matching pair), the --public directory, the Redis URL, and that the listening
and admin addresses can be bound (each is bound and closed at once).

It prints "configuration OK" and exits 0, or prints every problem, one per
line naming the setting and its value, and exits 2. Warnings, such as a WSD_*
variable that is no setting, go to stderr and do not fail the check.

An address already in use is a warning, not a failure: it is expected when wsd
is already running, as when checking a changed file before a reload
(ExecReload=wsd check ... in a systemd unit). If wsd is not running, whatever
holds the address would make "wsd serve" fail.`,
		Args: cobra.NoArgs,
	}
	config.AddFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		stderr := cmd.ErrOrStderr()
		env := os.Environ()
		warnings := config.UnknownEnv(env)

		// A configuration that loads in part is still checked, so that
		// every problem shows at once.
		cfg, _, loadErr := config.LoadSources(cmd.Flags(), env)
		problems := []error{loadErr}
		valErr := cfg.Validate()
		problems = append(problems, valErr)
		bad := invalidFields(valErr)

		// Binding needs a host and port that Validate accepts, and the
		// values the loaded file would give them.
		if loadErr == nil && !bad["address"] && !bad["port"] {
			p, w := checkBind(cfg.ListenAddr(),
				fieldError("address", cfg.Address), fieldError("port", cfg.Port))
			problems, warnings = append(problems, p), append(warnings, w...)
		}
		if loadErr == nil && cfg.AdminAddress != "" && !bad["admin-address"] {
			admin := fieldError("admin-address", cfg.AdminAddress)
			p, w := checkBind(cfg.AdminAddress, admin, admin)
			problems, warnings = append(problems, p), append(warnings, w...)
		}

		for _, w := range warnings {
			fmt.Fprintf(stderr, "wsd: warning: %s\n", w)
		}
		if err := errors.Join(problems...); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		_, err := fmt.Fprintln(cmd.OutOrStdout(), "configuration OK")
		return err
	}
	return cmd
}

// invalidFields returns the settings that Validate found fault with.
func invalidFields(err error) map[string]bool {
	bad := make(map[string]bool)
	var walk func(error)
	walk = func(err error) {
		var fe *config.FieldError
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		default:
			if errors.As(err, &fe) {
				bad[fe.Field] = true
			}
		}
	}
	walk(err)
	return bad
}

// fieldError returns a function that reports a problem with the setting
// field, whose value is value.
func fieldError(field string, value any) func(reason string) error {
	return func(reason string) error {
		return &config.FieldError{Field: field, Value: value, Reason: reason}
	}
}

// checkBind binds the TCP address addr and closes it at once. A failure is
// a problem, reported by onHost if it lies with the host part of addr and
// by onPort otherwise; the address being in use, as it is while wsd runs,
// is only a warning.
func checkBind(addr string, onHost, onPort func(reason string) error) (problem error, warnings []string) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln.Close(), nil
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, []string{onPort(addr + " is in use: expected if wsd is running; otherwise wsd serve would fail to bind it").Error()}
	case errors.Is(err, syscall.EACCES):
		return onPort("cannot bind " + addr + ": permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"), nil
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return onHost("cannot bind " + addr + ": not an address of this host"), nil
	}
	return onPort(fmt.Sprintf("cannot bind %s: %v", addr, err)), nil
}
