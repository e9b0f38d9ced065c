package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. It is
// part of Linux's user-space ABI and 100 on every architecture Go supports.
const clockTicks = 100

// ErrFormat reports a /proc file whose content could not be parsed.
var ErrFormat = errors.New("procstat: unexpected /proc format")

// Sample is one reading of a process tree.
type Sample struct {
	// PIDs are the processes read: the root first, then its descendants.
	PIDs []int
	// RSS is the resident memory of those processes in bytes (Rss of
	// smaps_rollup, so shared pages count once per process).
	RSS int64
	// CPU is the user plus system time those processes have used.
	CPU time.Duration
	// At is when the sample was taken.
	At time.Time
}

// Measure reads pid and every descendant of it. A descendant that exits
// while being read is left out; the root must exist.
func Measure(pid int) (Sample, error) {
	pids, err := Tree(pid)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{At: time.Now()}
	for _, p := range pids {
		rss, err := RSS(p)
		if err != nil {
			if p == pid {
				return Sample{}, err
			}
			continue
		}
		cpu, err := CPUTime(p)
		if err != nil {
			if p == pid {
				return Sample{}, err
			}
			continue
		}
		s.PIDs = append(s.PIDs, p)
		s.RSS += rss
		s.CPU += cpu
	}
	return s, nil
}

// Tree returns pid followed by all its descendants, found through the parent
// pid of every process in /proc.
func Tree(pid int) ([]int, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("procstat: process %d: %w", pid, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	children := make(map[int][]int)
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue // exited meanwhile
		}
		children[st.ppid] = append(children[st.ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		kids := children[tree[i]]
		slices.Sort(kids)
		tree = append(tree, kids...)
	}
	return tree, nil
}

// Group returns the processes whose process group is pgid, in pid order.
func Group(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	var pids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil && st.pgrp == pgid {
			pids = append(pids, p)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// RSS returns the resident memory of one process in bytes, from
// /proc/PID/smaps_rollup, or VmRSS of /proc/PID/status on kernels without it.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err == nil {
		if kb, err := fieldKB(b, "Rss:"); err == nil {
			return kb * 1024, nil
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	kb, err := fieldKB(b, "VmRSS:")
	if err != nil {
		return 0, fmt.Errorf("procstat: status of %d: %w", pid, err)
	}
	return kb * 1024, nil
}

// PeakRSS returns the peak resident memory of pid and its descendants in
// bytes: the sum of their VmHWM in /proc/PID/status, each process's high
// water mark since it started. The processes need not have peaked at the
// same moment, so for a tree of several processes it is an upper bound.
// A descendant that exits while being read is left out; the root must
// exist.
func PeakRSS(pid int) (int64, error) {
	pids, err := Tree(pid)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, p := range pids {
		hwm, err := highWaterMark(p)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue
		}
		sum += hwm
	}
	return sum, nil
}

// highWaterMark returns VmHWM of one process in bytes.
func highWaterMark(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	kb, err := fieldKB(b, "VmHWM:")
	if err != nil {
		return 0, fmt.Errorf("procstat: status of %d: %w", pid, err)
	}
	return kb * 1024, nil
}

// CPUTime returns the user plus system CPU time of one process.
func CPUTime(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return time.Duration(st.utime+st.stime) * time.Second / clockTicks, nil
}

// KernelSlab returns the kernel's slab memory in bytes ("Slab:" in
// /proc/meminfo). Socket structures live there, so its growth while
// connections open estimates their kernel cost; it is machine-wide and so
// noisy when other programs run.
func KernelSlab() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	kb, err := fieldKB(b, "Slab:")
	if err != nil {
		return 0, fmt.Errorf("procstat: meminfo: %w", err)
	}
	return kb * 1024, nil
}

// RaiseFileLimit raises this process's soft limit on open files to its hard
// limit and returns the new soft limit. Child processes inherit it.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("procstat: getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("procstat: setrlimit: %w", err)
		}
	}
	return lim.Cur, nil
}

type stat struct {
	ppid, pgrp   int
	utime, stime uint64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, fmt.Errorf("procstat: %w", err)
	}
	return parseStat(b)
}

// parseStat reads /proc/PID/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("%w: stat without command name", ErrFormat)
	}
	// After ')' come field 3 (state), 4 (ppid), ... 14 (utime), 15 (stime).
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return stat{}, fmt.Errorf("%w: stat has %d fields after the name", ErrFormat, len(f))
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return stat{}, fmt.Errorf("%w: ppid: %w", ErrFormat, err)
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return stat{}, fmt.Errorf("%w: pgrp: %w", ErrFormat, err)
	}
	utime, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("%w: utime: %w", ErrFormat, err)
	}
	stime, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("%w: stime: %w", ErrFormat, err)
	}
	return stat{ppid: ppid, pgrp: pgrp, utime: utime, stime: stime}, nil
}

// fieldKB finds the line starting with key in a "Key:   123 kB" file.
func fieldKB(b []byte, key string) (int64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: %s %q", ErrFormat, key, f[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: no %s line", ErrFormat, key)
}
