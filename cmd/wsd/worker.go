package main

import (
	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/internal/workerproto"
	"github.com/wsd-server/wsd/worker"
)

// newWorkerCmd is the hidden `wsd worker` subcommand: the master re-executes
// the wsd binary with it for each worker process, handing over the listening
// socket and the configuration by file descriptor (see package master).
func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:           workerproto.Command,
		Short:         "Serve as a worker of `wsd serve` (started by the master, not by hand)",
		Hidden:        true,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := worker.Inherit()
			if err != nil {
				return err
			}
			return worker.RunProcess(cmd.Context(), in)
		},
	}
}
