package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd is the hidden `wsd man` subcommand: it writes a man page for
// every command of the tree it belongs to, as `make man` does into
// docs/man, or a packager into /usr/share/man/man1.
func newManCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Short:  "Write the man pages of wsd and its commands into a directory",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			if err := writeMan(cmd.Root(), dir); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "write the pages into this `directory` (created if need be)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

// writeMan writes root's pages into dir, section 1. The pages are dated
// now, or by SOURCE_DATE_EPOCH when it is set (reproducible builds), and name
// no version, so that they change only with the commands.
func writeMan(root *cobra.Command, dir string) error {
	root.DisableAutoGenTag = true
	return doc.GenManTree(root, &doc.GenManHeader{
		Title:   "WSD",
		Section: "1",
		Source:  "wsd",
		Manual:  "wsd manual",
	}, dir)
}
