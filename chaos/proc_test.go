//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The /proc readers the suite measures the daemon with. Every one of them
// treats a process that has gone as empty: processes come and go while they
// are read.

// procStat returns the state letter ("R", "S", "T", "Z"...) and the parent
// pid of pid; ok is false when there is no such process.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...; the command name may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, _, ok := procStat(pid)
	return ok && st != "Z" && st != "X"
}

// childrenOf returns the live children of ppid, found by the parent pid in
// /proc/*/stat, in ascending order.
func childrenOf(ppid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		st, pp, ok := procStat(pid)
		if ok && pp == ppid && st != "Z" && st != "X" {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// runs reports whether pid is a live process executing bin.
func runs(pid int, bin string) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && strings.TrimSuffix(exe, " (deleted)") == bin && alive(pid)
}

// processesOf returns the live processes executing bin.
func processesOf(bin string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err == nil && runs(pid, bin) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// fdCount returns the number of open descriptors of pid (0 if it has gone).
func fdCount(pid int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return len(names)
}

// rssOf returns the resident memory of pid in bytes, VmRSS of
// /proc/pid/status (0 if it has gone).
func rssOf(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			// "VmRSS:	   12345 kB"
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// fdLimit returns the soft RLIMIT_NOFILE of pid, from /proc/pid/limits.
func fdLimit(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// filesOf returns the paths in the file system that pid holds: files it
// has open under dir (those deleted already left out), and every unix
// socket it has bound to a path.
func filesOf(pid int, dir string) []string {
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return nil
	}
	var paths []string
	inodes := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(fdDir + "/" + e.Name())
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		} else if strings.HasPrefix(target, dir+"/") && !strings.HasSuffix(target, " (deleted)") {
			paths = append(paths, target)
		}
	}
	// Num RefCount Protocol Flags Type St Inode Path
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/unix")
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 8 && inodes[f[6]] && strings.HasPrefix(f[7], "/") {
			paths = append(paths, f[7])
		}
	}
	return paths
}
