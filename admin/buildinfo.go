package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsd-server/wsd/internal/buildinfo"
)

// descBuild is wsd_build_info, which every process of the daemon serves:
// after a binary upgrade, or a reload that found a new binary on disk, the
// master and its workers may run different builds for a while.
var descBuild = prometheus.NewDesc("wsd_build_info",
	"1, with the wsd release (version), the VCS revision it was built from (revision) and the Go version that built it (goversion).",
	[]string{"version", "revision", "goversion"}, nil)

// buildInfo is a registry holding wsd_build_info for the running binary.
func buildInfo() prometheus.Gatherer {
	bi := buildinfo.Get()
	reg := prometheus.NewRegistry()
	reg.MustRegister(constCollector{descBuild, []prometheus.Metric{
		prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, bi.Version, bi.Revision, bi.GoVersion),
	}})
	return reg
}
