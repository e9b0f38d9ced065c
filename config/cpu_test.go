package config

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestAvailableCPUs(t *testing.T) {
	n := AvailableCPUs()
	if n < 1 || n > runtime.NumCPU() {
		t.Errorf("AvailableCPUs() = %d, want 1 to runtime.NumCPU() = %d", n, runtime.NumCPU())
	}
}

func TestCgroupCPULimit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // path under the cgroup root: contents
		self  string            // /proc/self/cgroup
		want  int               // 0: no limit
	}{
		{"v2 no limit", map[string]string{"cpu.max": "max 100000\n"}, "0::/\n", 0},
		{"v2 root has no cpu.max", map[string]string{"cgroup.controllers": "cpu"}, "0::/\n", 0},
		{"v2 whole CPUs", map[string]string{"cpu.max": "200000 100000\n"}, "0::/\n", 2},
		{"v2 rounded up", map[string]string{"cpu.max": "150000 100000\n"}, "0::/\n", 2},
		{"v2 below one CPU", map[string]string{"cpu.max": "10000 100000\n"}, "0::/\n", 1},
		{"v2 default period", map[string]string{"cpu.max": "300000\n"}, "0::/\n", 3},
		{"v2 own cgroup", map[string]string{
			"system.slice/wsd.service/cpu.max": "400000 100000\n",
			"system.slice/cpu.max":             "max 100000\n",
		}, "0::/system.slice/wsd.service\n", 4},
		{"v2 parent is lower", map[string]string{
			"system.slice/wsd.service/cpu.max": "400000 100000\n",
			"system.slice/cpu.max":             "100000 100000\n",
		}, "0::/system.slice/wsd.service\n", 1},
		{"v2 host path absent in a container", map[string]string{"cpu.max": "250000 100000\n"}, "0::/docker/abc123\n", 3},
		{"v2 garbage", map[string]string{"cpu.max": "lots\n"}, "0::/\n", 0},
		{"v1 no limit", map[string]string{
			"cpu/cpu.cfs_quota_us":  "-1\n",
			"cpu/cpu.cfs_period_us": "100000\n",
		}, "1:cpu:/\n2:cpuacct:/\n", 0},
		{"v1 limit", map[string]string{
			"cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  "50000\n",
			"cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
		}, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n", 1},
		{"v1 other order", map[string]string{
			"cpuacct,cpu/cpu.cfs_quota_us":  "350000\n",
			"cpuacct,cpu/cpu.cfs_period_us": "100000\n",
		}, "4:cpuacct,cpu:/\n", 4},
		{"v1 without cpu controller", map[string]string{
			"memory/cpu.cfs_quota_us":  "100000\n",
			"memory/cpu.cfs_period_us": "100000\n",
		}, "3:memory:/\n", 0},
		{"hybrid: v1 cpu and v2 unified", map[string]string{
			"cpu/cpu.cfs_quota_us":  "200000\n",
			"cpu/cpu.cfs_period_us": "100000\n",
		}, "1:cpu:/\n0::/\n", 2},
		{"nothing", nil, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, text := range tt.files {
				path := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			limit, ok := cgroupCPULimit(root, tt.self)
			if !ok {
				limit = 0
			}
			if limit != tt.want {
				t.Errorf("cgroupCPULimit = %d, %v; want %d", limit, ok, tt.want)
			}
		})
	}
}
