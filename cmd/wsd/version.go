package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/internal/buildinfo"
)

// version is the release as older build scripts set it,
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/wsd
//
// still honoured; -X github.com/wsd-server/wsd/internal/buildinfo.Version
// is the way now, since the metrics read it too.
var version string

func init() {
	if version != "" {
		buildinfo.Version = version
	}
}

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
	bi := buildinfo.Get()
	return fmt.Sprintf("wsd version %s %s %s/%s", bi.Version, bi.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// release is the version that wsd reports (see buildinfo.Info.Version).
func release() string { return buildinfo.Get().Version }
