// Package buildinfo says which build of wsd is running: its release, the
// VCS revision it was built from and the Go toolchain that built it. The
// version command and the wsd_build_info metric read it.
//
// Release builds stamp Version (and Revision, where the source has no .git
// directory, as in an image build) at link time:
//
//	go build -ldflags "-X github.com/wsd-server/wsd/internal/buildinfo.Version=v1.2.3 \
//	    -X github.com/wsd-server/wsd/internal/buildinfo.Revision=$(git rev-parse HEAD)" ./cmd/wsd
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is the release, set at link time; "dev" when it was not.
var Version = "dev"

// Revision is the VCS revision, set at link time; when it was not, the one
// the go command recorded in the binary, if any.
var Revision = ""

// Info describes a build.
type Info struct {
	// Version is the release: Version as set at link time, or for a build
	// without it the module version that "go install ...@v1.2.3" records,
	// or "dev-" and the revision's first 12 digits for a checkout ("+dirty"
	// when it had uncommitted changes), or "dev".
	Version string
	// Revision is the VCS revision (a full commit hash), or "unknown".
	Revision string
	// GoVersion is the Go toolchain's version, as runtime.Version reports it.
	GoVersion string
}

// Get returns the running binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(Version, Revision, bi)
}

// resolve fills in an Info from the link-time values and bi, which may be nil.
func resolve(version, revision string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	var vcsRev, dirty string
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
	}
	if info.Revision == "" {
		info.Revision = vcsRev
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Version == "dev" && bi != nil {
		switch v := bi.Main.Version; {
		case v != "" && v != "(devel)":
			info.Version = v
		case vcsRev != "":
			info.Version += "-" + vcsRev[:min(len(vcsRev), 12)] + dirty
		}
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}
