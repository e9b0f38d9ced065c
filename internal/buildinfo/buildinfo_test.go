package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified},
		}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name              string
		version, revision string
		bi                *debug.BuildInfo
		want              Info
	}{
		{"stamped", "v1.2.3", "abc", vcs(rev, "false"), Info{"v1.2.3", "abc", runtime.Version()}},
		{"stamped version, revision from vcs", "v1.2.3", "", vcs(rev, "true"), Info{"v1.2.3", rev, runtime.Version()}},
		{"checkout", "dev", "", vcs(rev, "false"), Info{"dev-0123456789ab", rev, runtime.Version()}},
		{"dirty checkout", "dev", "", vcs(rev, "true"), Info{"dev-0123456789ab+dirty", rev, runtime.Version()}},
		{"go install", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}}, Info{"v0.1.0", "unknown", runtime.Version()}},
		{"nothing known", "dev", "", nil, Info{"dev", "unknown", runtime.Version()}},
		{"empty version", "", "", nil, Info{"dev", "unknown", runtime.Version()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.version, tt.revision, tt.bi); got != tt.want {
				t.Errorf("resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}
