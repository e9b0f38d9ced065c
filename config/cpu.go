package config

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// AvailableCPUs returns how many CPUs this process may use, the worker count
// that processes = 0 stands for: the CPUs in its scheduler affinity mask
// (taskset, cpuset), lowered to its cgroup's CPU quota (docker --cpus,
// systemd CPUQuota=) rounded up, and at least 1.
//
// The quota is read from the cgroup v2 file cpu.max, or the cgroup v1 files
// cpu.cfs_quota_us and cpu.cfs_period_us, of the process's cgroup and its
// ancestors under /sys/fs/cgroup; the lowest one applies.
func AvailableCPUs() int {
	n := affinityCPUs()
	if self, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		if limit, ok := cgroupCPULimit("/sys/fs/cgroup", string(self)); ok && limit < n {
			n = limit
		}
	}
	return max(n, 1)
}

// cgroupCPULimit returns the CPU limit, rounded up, that the cgroup file
// system mounted at root sets for a process whose /proc/self/cgroup reads
// self; ok is false when there is no limit.
func cgroupCPULimit(root, self string) (limit int, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(self))
	for sc.Scan() {
		// "0::/path" in v2; "4:cpu,cpuacct:/path" in v1.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var mounts []string
		var read func(dir string) (int, bool)
		switch controllers := strings.Split(parts[1], ","); {
		case parts[0] == "0" && parts[1] == "":
			mounts, read = []string{root}, readCPUMax
		case slices.Contains(controllers, "cpu"):
			// The v1 hierarchy is mounted under the controllers' names,
			// joined in either order, and often linked as "cpu".
			mounts = []string{
				filepath.Join(root, parts[1]),
				filepath.Join(root, "cpu,cpuacct"),
				filepath.Join(root, "cpu"),
			}
			read = readCFSQuota
		default:
			continue
		}
		for _, mount := range mounts {
			if l, found := hierarchyLimit(mount, parts[2], read); found && (!ok || l < limit) {
				limit, ok = l, true
			}
		}
	}
	return limit, ok
}

// hierarchyLimit returns the lowest limit that read finds in the cgroup
// path of the hierarchy mounted at mount and in its ancestors. In a
// container without a cgroup namespace, path names a cgroup of the host
// that is not under mount; then mount is the container's own cgroup.
func hierarchyLimit(mount, path string, read func(dir string) (int, bool)) (limit int, ok bool) {
	if _, err := os.Stat(mount); err != nil {
		return 0, false
	}
	dir := filepath.Join(mount, filepath.FromSlash(path))
	if _, err := os.Stat(dir); err != nil {
		dir = mount
	}
	for {
		if l, found := read(dir); found && (!ok || l < limit) {
			limit, ok = l, true
		}
		if dir == mount || !strings.HasPrefix(dir, mount) {
			return limit, ok
		}
		dir = filepath.Dir(dir)
	}
}

// readCPUMax reads the cgroup v2 cpu.max file of dir: "max 100000" for no
// limit, "150000 100000" for 1.5 CPUs.
func readCPUMax(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 || fields[0] == "max" {
		return 0, false
	}
	period := "100000"
	if len(fields) > 1 {
		period = fields[1]
	}
	return cpuQuota(fields[0], period)
}

// readCFSQuota reads the cgroup v1 files cpu.cfs_quota_us (-1 for no
// limit) and cpu.cfs_period_us of dir.
func readCFSQuota(dir string) (int, bool) {
	q, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, false
	}
	p, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false
	}
	return cpuQuota(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

// cpuQuota returns quota/period rounded up and at least 1, or false for
// no limit or text that is not a positive quota.
func cpuQuota(quota, period string) (int, bool) {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return int(max((q+p-1)/p, 1)), true
}
