package report

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where the benchmarks ran.
type Machine struct {
	// CPUs is the number of logical CPUs this process may use (nproc).
	CPUs int
	// Model is the CPU's "model name" from /proc/cpuinfo.
	Model string
	// Kernel is the kernel release.
	Kernel string
	// MemTotal is the machine's memory in bytes.
	MemTotal int64
	// Go is the Go toolchain version (`go version`), or the version this
	// program was built with if the toolchain is not on the PATH.
	Go string
}

// DetectMachine reads the machine's description from /proc.
func DetectMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range bytes.Lines(b) {
			if k, v, ok := bytes.Cut(line, []byte(":")); ok && string(bytes.TrimSpace(k)) == "model name" {
				m.Model = string(bytes.TrimSpace(v))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range bytes.Lines(b) {
			if rest, ok := bytes.CutPrefix(line, []byte("MemTotal:")); ok {
				if f := bytes.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
					m.MemTotal = kb * 1024
				}
				break
			}
		}
	}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		if v := strings.TrimSpace(string(out)); v != "" {
			m.Go = v
		}
	}
	return m
}

// String renders the machine on one line.
func (m Machine) String() string {
	var parts []string
	cpu := strconv.Itoa(m.CPUs) + " CPUs"
	if m.Model != "" {
		cpu += " (" + m.Model + ")"
	}
	parts = append(parts, cpu)
	if m.MemTotal > 0 {
		parts = append(parts, strconv.FormatFloat(float64(m.MemTotal)/(1<<30), 'f', 1, 64)+" GiB RAM")
	}
	if m.Kernel != "" {
		parts = append(parts, "Linux "+m.Kernel)
	}
	if m.Go != "" {
		parts = append(parts, m.Go)
	}
	return strings.Join(parts, ", ")
}
