package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release, set at build time with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/wsd
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of wsd and of the Go toolchain that built it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}

// versionLine reads like the go command's own: "wsd version v1.2.3 go1.26.8 linux/amd64".
func versionLine() string {
	return fmt.Sprintf("wsd version %s %s %s/%s", release(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// release is version, or for a build without -ldflags the module version
// that "go install ...@v1.2.3" records, or the VCS revision of a checkout.
func release() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return version + "-" + rev + dirty
	}
	return version
}
