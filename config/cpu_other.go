//go:build !linux

package config

import "runtime"

// affinityCPUs returns the number of CPUs this process may run on.
func affinityCPUs() int { return runtime.NumCPU() }
