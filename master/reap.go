package master

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// reapOrphans reaps the exited children that are not workers. Only PID 1
// has any: the kernel hands it every orphan of its PID namespace, and as a
// container's entrypoint the master is PID 1. Workers are left to their own
// Wait, which wants their exit status.
func (m *master) reapOrphans() {
	ours := make(map[int]bool, len(m.procs))
	for p := range m.procs {
		ours[p.pid] = true
	}
	for {
		// WNOWAIT peeks at a zombie without reaping it.
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
			return
		}
		pid := siginfoPid(&info)
		if pid == 0 || ours[pid] {
			// Nothing to reap, or a worker that its own goroutine is about
			// to reap; any orphan behind it waits for the next tick.
			return
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil {
			return
		}
		m.log.Debug("reaped an orphan", "pid", pid, "status", ws.ExitStatus())
	}
}

// siginfoPid returns si_pid of a SIGCHLD siginfo_t, which x/sys/unix keeps
// opaque. In the kernel's layout the union after si_signo, si_errno and
// si_code is pointer-aligned, and SIGCHLD's member opens with si_pid.
func siginfoPid(info *unix.Siginfo) int {
	const ptr = unsafe.Sizeof(uintptr(0))
	const off = (3*4 + ptr - 1) &^ (ptr - 1)
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}
