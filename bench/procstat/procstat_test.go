package procstat

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    stat
		wantErr bool
	}{
		{"plain", "1234 (wsd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 100 0 0", stat{ppid: 1, pgrp: 1234, utime: 250, stime: 75}, false},
		{"name with spaces and parens", "77 (a) b (c)) R 42 77 77 0 -1 0 0 0 0 0 7 8 0 0", stat{ppid: 42, pgrp: 77, utime: 7, stime: 8}, false},
		{"no name", "77 a R 42", stat{}, true},
		{"short", "77 (a) R 42 1 2", stat{}, true},
		{"bad ppid", "77 (a) R x 0 0 0 0 0 0 0 0 0 1 2", stat{}, true},
		{"bad utime", "77 (a) R 1 0 0 0 0 0 0 0 0 0 -1 2", stat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrFormat) {
				t.Errorf("error %v is not ErrFormat", err)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFieldKB(t *testing.T) {
	const rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:               10240 kB\nPss:  9000 kB\n"
	tests := []struct {
		in, key string
		want    int64
		wantErr bool
	}{
		{rollup, "Rss:", 10240, false},
		{rollup, "Pss:", 9000, false},
		{rollup, "Swap:", 0, true},
		{"VmRSS:\n", "VmRSS:", 0, true},
		{"VmRSS: -5 kB\n", "VmRSS:", 0, true},
	}
	for _, tt := range tests {
		got, err := fieldKB([]byte(tt.in), tt.key)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("fieldKB(%q) = %d, %v; want %d, error %v", tt.key, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add("wsd", int32(1), int32(5), uint64(250), uint64(75))
	f.Add("a) b (c", int32(0), int32(0), uint64(0), uint64(1<<40))
	f.Fuzz(func(t *testing.T, comm string, ppid, pgrp int32, utime, stime uint64) {
		line := fmt.Sprintf("123 (%s) S %d %d 1 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0", comm, ppid, pgrp, utime, stime)
		got, err := parseStat([]byte(line))
		if err != nil {
			t.Fatalf("parseStat(%q): %v", line, err)
		}
		if want := (stat{ppid: int(ppid), pgrp: int(pgrp), utime: utime, stime: stime}); got != want {
			t.Fatalf("parseStat(%q) = %+v, want %+v", line, got, want)
		}
	})
}

func FuzzFieldKB(f *testing.F) {
	f.Add([]byte("Rss: 12 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := fieldKB(b, "Rss:"); err == nil && n < 0 {
			t.Fatalf("negative size %d", n)
		}
	})
}

// startTree starts a shell with one sleeping child and returns the shell.
func startTree(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start /bin/sh: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

func TestTreeAndMeasure(t *testing.T) {
	cmd := startTree(t)
	var pids []int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		pids, err = Tree(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) != 2 || pids[0] != cmd.Process.Pid {
		t.Fatalf("Tree(%d) = %v, want the shell and its sleep", cmd.Process.Pid, pids)
	}
	if slices.Contains(pids, os.Getpid()) {
		t.Errorf("Tree of a child contains its parent: %v", pids)
	}
	s, err := Measure(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.PIDs) != 2 || s.RSS <= 0 || s.CPU < 0 {
		t.Errorf("Measure = %+v", s)
	}
	group, err := Group(cmd.Process.Pid)
	if err != nil || !slices.Equal(group, slices.Sorted(slices.Values(pids))) {
		t.Errorf("Group(%d) = %v, %v; want %v", cmd.Process.Pid, group, err, pids)
	}
	one, err := RSS(cmd.Process.Pid)
	if err != nil || one <= 0 || one >= s.RSS {
		t.Errorf("RSS of the shell = %d, %v; tree total %d", one, err, s.RSS)
	}
	// Each process's peak is at least what it holds now, and the shell
	// alone holds less than the tree.
	if peak, err := PeakRSS(cmd.Process.Pid); err != nil || peak <= one {
		t.Errorf("PeakRSS = %d, %v; the shell's RSS %d, the tree's %d", peak, err, one, s.RSS)
	}
}

func TestMeasureSelfCPU(t *testing.T) {
	before, err := Measure(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := Measure(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= before.CPU {
		t.Errorf("CPU time did not grow over 100 ms of spinning: %v then %v", before.CPU, after.CPU)
	}
}

func TestMissingProcess(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run /bin/true: %v", err)
	}
	if _, err := Measure(cmd.Process.Pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Measure of an exited process: %v, want ErrNotExist", err)
	}
	if _, err := PeakRSS(cmd.Process.Pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PeakRSS of an exited process: %v, want ErrNotExist", err)
	}
}

func TestKernelSlabAndLimit(t *testing.T) {
	slab, err := KernelSlab()
	if err != nil || slab <= 0 {
		t.Errorf("KernelSlab = %d, %v", slab, err)
	}
	n, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if n != lim.Max || lim.Cur != lim.Max {
		t.Errorf("RaiseFileLimit = %d; limit now %d of %d", n, lim.Cur, lim.Max)
	}
}
