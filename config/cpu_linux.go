package config

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// affinityCPUs returns the number of CPUs in the scheduler affinity mask of
// this process, which unlike runtime.NumCPU follows changes made after it
// started.
func affinityCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return runtime.NumCPU()
	}
	return max(set.Count(), 1)
}
