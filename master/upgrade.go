package master

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envUpgrade carries the inheritState from a master to the binary it
// re-executes into.
const envUpgrade = "WSD_UPGRADE_STATE"

// inheritState is what a master hands over across its re-execution: the
// listening sockets and the workers serving them, by descriptor number and
// pid. The descriptors survive the exec because the master clears their
// close-on-exec flag; the workers survive it because exec does not touch
// children, which stay children of the same pid.
type inheritState struct {
	Network  string        `json:"network"`
	Addr     string        `json:"addr"`
	Slots    []inheritSlot `json:"slots"`
	Draining []int         `json:"draining,omitempty"` // pids of workers still draining
}

type inheritSlot struct {
	Socket   int `json:"socket"`
	PID      int `json:"pid"`
	Lifeline int `json:"lifeline"` // write end of the worker's control pipe
}

// parseInheritState decodes and checks an inheritState.
func parseInheritState(s string) (inheritState, error) {
	var st inheritState
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("master: %s: %w", envUpgrade, err)
	}
	if dec.More() {
		return st, fmt.Errorf("master: %s: trailing data", envUpgrade)
	}
	bad := func(format string, args ...any) (inheritState, error) {
		return st, fmt.Errorf("master: %s: "+format, append([]any{envUpgrade}, args...)...)
	}
	if st.Network != "tcp" && st.Network != "tcp4" {
		return bad("network %q", st.Network)
	}
	if _, _, err := net.SplitHostPort(st.Addr); err != nil {
		return bad("address %q: %v", st.Addr, err)
	}
	if len(st.Slots) == 0 {
		return bad("no slots")
	}
	fds := make(map[int]bool)
	pids := make(map[int]bool)
	useFD := func(fd int) bool {
		if fd < 3 || fds[fd] {
			return false
		}
		fds[fd] = true
		return true
	}
	for i, sl := range st.Slots {
		if !useFD(sl.Socket) {
			return bad("slot %d: socket descriptor %d", i, sl.Socket)
		}
		switch {
		case sl.PID < 0, sl.PID > 0 && pids[sl.PID]:
			return bad("slot %d: pid %d", i, sl.PID)
		case sl.PID == 0 && sl.Lifeline != 0:
			return bad("slot %d: lifeline without a worker", i)
		case sl.PID > 0 && !useFD(sl.Lifeline):
			return bad("slot %d: lifeline descriptor %d", i, sl.Lifeline)
		}
		pids[sl.PID] = sl.PID > 0
	}
	for _, pid := range st.Draining {
		if pid <= 0 || pids[pid] {
			return bad("draining pid %d", pid)
		}
		pids[pid] = true
	}
	return st, nil
}

// inheritedState reads the state a previous master image left, if any, and
// removes it from the environment so that workers do not see it.
func inheritedState() (inheritState, bool, error) {
	s, ok := os.LookupEnv(envUpgrade)
	if !ok {
		return inheritState{}, false, nil
	}
	os.Unsetenv(envUpgrade)
	st, err := parseInheritState(s)
	if err != nil {
		return st, false, err
	}
	for i, sl := range st.Slots {
		v, err := unix.GetsockoptInt(sl.Socket, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil || v != 1 {
			return st, false, fmt.Errorf("master: %s: slot %d: descriptor %d is not a listening socket", envUpgrade, i, sl.Socket)
		}
	}
	return st, true, nil
}

// adopt takes over the sockets and workers of the master image this process
// was before its binary upgrade.
func (m *master) adopt(st inheritState) error {
	m.ep = endpoint{network: st.Network, addr: st.Addr}
	for i, is := range st.Slots {
		unix.CloseOnExec(is.Socket)
		s := &slot{index: i, socket: os.NewFile(uintptr(is.Socket), "wsd-listener"), cfg: m.cfg, exe: m.self}
		m.slots = append(m.slots, s)
		if is.PID == 0 {
			continue
		}
		unix.CloseOnExec(is.Lifeline)
		p, err := m.adoptProc(is.PID, s)
		if err != nil {
			return err
		}
		p.lifeline = os.NewFile(uintptr(is.Lifeline), "wsd-lifeline")
		p.ready = true
		s.cur = p
	}
	for _, pid := range st.Draining {
		p, err := m.adoptProc(pid, nil)
		if err != nil {
			return err
		}
		m.stopProc(p) // it already has SIGTERM; this arms the kill
	}
	if n := processes(m.cfg); n != len(m.slots) {
		m.log.Warn("binary upgrade: keeping the inherited worker count; send SIGHUP to apply the configured one",
			"inherited", len(m.slots), "configured", n)
	}
	m.log.Info("binary upgrade: took over", "addr", m.ep.addr, "workers", len(m.slots), "draining", len(st.Draining))
	for _, s := range m.slots {
		if s.cur == nil {
			m.restart(s)
		}
	}
	if m.allReady() {
		m.serving = true
		m.sdNotify(m.notify.ready(m.statusLine() + " (binary upgraded)"))
	}
	return nil
}

func (m *master) adoptProc(pid int, s *slot) (*proc, error) {
	process, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("master: adopting worker %d: %w", pid, err)
	}
	p := &proc{pid: pid, process: process, slot: s, cfg: m.cfg, exe: m.self}
	m.procs[p] = struct{}{}
	go m.wait(p)
	return p, nil
}

// execUpgrade replaces the master's image with exe, keeping its pid (so
// systemd's MAINPID and a container's PID 1 stay right), its sockets and its
// workers. It returns only on failure, with every descriptor as it was.
func (m *master) execUpgrade(exe string) error {
	st := inheritState{Network: m.ep.network, Addr: m.ep.addr}
	var fds []int
	for _, s := range m.slots {
		is := inheritSlot{Socket: int(s.socket.Fd())}
		if p := s.cur; p != nil {
			is.PID, is.Lifeline = p.pid, int(p.lifeline.Fd())
			fds = append(fds, is.Lifeline)
		}
		fds = append(fds, is.Socket)
		st.Slots = append(st.Slots, is)
	}
	for p := range m.procs {
		if p.slot == nil || p.slot.cur != p {
			st.Draining = append(st.Draining, p.pid)
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			restoreCloseOnExec(fds)
			return fmt.Errorf("master: keeping descriptor %d across exec: %w", fd, err)
		}
	}
	env := append(envWithout(os.Environ(), envUpgrade+"="), envUpgrade+"="+string(b))
	m.log.Info("binary upgrade: re-executing the master", "binary", exe)
	err = syscall.Exec(exe, os.Args, env)
	restoreCloseOnExec(fds)
	return fmt.Errorf("master: exec %s: %w", exe, err)
}

func restoreCloseOnExec(fds []int) {
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
}
