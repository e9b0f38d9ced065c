package master

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/internal/workerproto"
)

// envUpgrade carries the inheritState from a master to the binary it
// re-executes into.
const envUpgrade = "WSD_UPGRADE_STATE"

// envUpgradeChannels carries, next to envUpgrade, the master's ends of each
// worker's status pipe and broker socket (inheritChannels). They are not
// fields of envUpgrade because binaries older than these channels refuse
// unknown fields there, and a binary upgrade back to one of them (a
// rollback) must keep working; such a binary ignores the variable and
// leaves the descriptors open and unused. As it also leaves the variable in
// its environment for its own next upgrade, the variable names the state it
// was made with, by digest, and one made with another state is ignored.
const envUpgradeChannels = "WSD_UPGRADE_CHANNELS"

// inheritState is what a master hands over across its re-execution: the
// listening sockets and the workers serving them, by descriptor number and
// pid, with the master's ends of each worker's pipes and broker socket.
// The descriptors survive the exec because the master clears their
// close-on-exec flag; the workers survive it because exec does not touch
// children, which stay children of the same pid. What the master does not
// hand over closes at the exec: the relay's connections, which the workers
// replace through their broker sockets, and any scrape in progress.
type inheritState struct {
	Network  string        `json:"network"`
	Addr     string        `json:"addr"`
	Slots    []inheritSlot `json:"slots"`
	Draining []int         `json:"draining,omitempty"` // pids of workers still draining
	// Reloads travels in envUpgradeChannels; nil from an older image.
	Reloads *inheritReloads `json:"-"`
}

// inheritReloads carries the generations and the upgrade under way (see
// Status) across the exec, so that they go on like the pid.
type inheritReloads struct {
	Generation uint64            `json:"generation"`
	Issued     uint64            `json:"issued"`
	Count      uint64            `json:"count"`
	Last       *ReloadStatus     `json:"last,omitempty"`
	Workers    map[string]uint64 `json:"workers,omitempty"` // generation by pid
}

type inheritSlot struct {
	Socket   int `json:"socket"`
	PID      int `json:"pid"`
	Lifeline int `json:"lifeline"` // write end of the worker's control pipe
	// Status is the read end of the worker's status pipe, on which it
	// beats; Broker is the master's end of its broker socket. They travel
	// in envUpgradeChannels. A master image older than both leaves them
	// out (0), and the new image then replaces its workers at once.
	Status int `json:"-"`
	Broker int `json:"-"`
}

// inheritChannels is the value of envUpgradeChannels.
type inheritChannels struct {
	State   string           `json:"state"` // hex SHA-256 of the envUpgrade value it goes with
	Workers []inheritChannel `json:"workers"`
	Reloads *inheritReloads  `json:"reloads,omitempty"`
}

type inheritChannel struct {
	PID    int `json:"pid"`
	Status int `json:"status"`
	Broker int `json:"broker"`
}

// stateDigest names an envUpgrade value in envUpgradeChannels.
func stateDigest(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:])
}

// parseInheritChannels decodes an envUpgradeChannels value and sets the
// descriptors it carries in st, the decoded envUpgrade value state. A value
// made for another state is ignored: it was left behind by a binary that
// did not know it. Unknown fields are ignored too, for a rollback from a
// binary that knows more.
func parseInheritChannels(s, state string, st *inheritState) error {
	var ch inheritChannels
	if err := json.Unmarshal([]byte(s), &ch); err != nil {
		return fmt.Errorf("master: %s: %w", envUpgradeChannels, err)
	}
	if ch.State != stateDigest(state) {
		return nil
	}
	st.Reloads = ch.Reloads
	bad := func(format string, args ...any) error {
		return fmt.Errorf("master: %s: "+format, append([]any{envUpgradeChannels}, args...)...)
	}
	fds := make(map[int]bool)
	slotOf := make(map[int]int) // pid to slot index
	for i, sl := range st.Slots {
		fds[sl.Socket], fds[sl.Lifeline] = true, true
		if sl.PID > 0 {
			slotOf[sl.PID] = i
		}
	}
	useFD := func(fd int) bool {
		if fd == 0 {
			return true // absent
		}
		if fd < 3 || fds[fd] {
			return false
		}
		fds[fd] = true
		return true
	}
	seen := make(map[int]bool)
	for _, w := range ch.Workers {
		i, ok := slotOf[w.PID]
		switch {
		case !ok || seen[w.PID]:
			return bad("pid %d", w.PID)
		case !useFD(w.Status):
			return bad("worker %d: status descriptor %d", w.PID, w.Status)
		case !useFD(w.Broker):
			return bad("worker %d: broker descriptor %d", w.PID, w.Broker)
		}
		seen[w.PID] = true
		st.Slots[i].Status, st.Slots[i].Broker = w.Status, w.Broker
	}
	return nil
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
	channels, hasChannels := os.LookupEnv(envUpgradeChannels)
	os.Unsetenv(envUpgradeChannels)
	s, ok := os.LookupEnv(envUpgrade)
	if !ok {
		return inheritState{}, false, nil
	}
	os.Unsetenv(envUpgrade)
	st, err := parseInheritState(s)
	if err != nil {
		return st, false, err
	}
	if hasChannels {
		if err := parseInheritChannels(channels, s, &st); err != nil {
			return st, false, err
		}
	}
	for i, sl := range st.Slots {
		v, err := unix.GetsockoptInt(sl.Socket, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil || v != 1 {
			return st, false, fmt.Errorf("master: %s: slot %d: descriptor %d is not a listening socket", envUpgrade, i, sl.Socket)
		}
		if sl.Broker != 0 {
			if v, err := unix.GetsockoptInt(sl.Broker, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || v != unix.SOCK_SEQPACKET {
				return st, false, fmt.Errorf("master: %s: slot %d: descriptor %d is not a broker socket", envUpgradeChannels, i, sl.Broker)
			}
		}
		if sl.Status != 0 {
			var stat unix.Stat_t
			if err := unix.Fstat(sl.Status, &stat); err != nil || stat.Mode&unix.S_IFMT != unix.S_IFIFO {
				return st, false, fmt.Errorf("master: %s: slot %d: descriptor %d is not a status pipe", envUpgradeChannels, i, sl.Status)
			}
		}
	}
	return st, true, nil
}

// adopt takes over the sockets and workers of the master image this process
// was before its binary upgrade.
func (m *master) adopt(st inheritState) error {
	m.ep = endpoint{network: st.Network, addr: st.Addr}
	// The upgrade that led here is done once this image serves; a master
	// image too old to pass the generations starts them again.
	gens := map[string]uint64{}
	m.reloads.gen, m.reloads.issued = 1, 1
	if r := st.Reloads; r != nil && r.Generation > 0 {
		m.reloads = reloadState{gen: r.Generation, issued: max(r.Issued, r.Generation), count: r.Count, last: r.Last}
		gens = r.Workers
		if l := m.reloads.last; l != nil && l.State == ReloadRunning {
			m.reloads.end(l, ReloadOK, "")
		}
	}
	genOf := func(pid int) uint64 {
		if g, ok := gens[strconv.Itoa(pid)]; ok {
			return g
		}
		return m.reloads.gen
	}
	older := false // workers that predate the broker socket
	for i, is := range st.Slots {
		unix.CloseOnExec(is.Socket)
		s := &slot{index: i, socket: os.NewFile(uintptr(is.Socket), "wsd-listener"), cfg: m.cfg, gen: m.reloads.gen, exe: m.self}
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
		p.gen = genOf(is.PID)
		s.cur = p
		if is.Status != 0 {
			unix.CloseOnExec(is.Status)
			// The pipe is still in the non-blocking mode os.Pipe gave it,
			// so NewFile makes it pollable and its deadlines work.
			p.status = os.NewFile(uintptr(is.Status), "wsd-status")
			go m.watchStatus(p, p.status, p.cfg.WorkerTimeout, true)
		}
		if is.Broker == 0 {
			older = true
			continue
		}
		if p.broker, err = workerproto.FDConn(is.Broker, "wsd-broker"); err != nil {
			return err
		}
		go m.serveBroker(p, p.broker)
	}
	for _, pid := range st.Draining {
		p, err := m.adoptProc(pid, nil)
		if err != nil {
			return err
		}
		p.gen = genOf(pid)
		// It was asked to drain, or to stop; this arms the kill, late
		// enough for a drain. The SIGTERM changes nothing for a worker
		// that drains already.
		p.stopping = true
		m.signalProc(p, unix.SIGTERM)
		p.after(m.cfg.DrainPeriod+m.cfg.ShutdownTimeout+killGrace, func() { m.send(event{kind: evKillTimeout, p: p}) })
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
	if older {
		// Their master reached them through a runtime directory, which
		// the exec left behind and which is named after this very pid.
		os.RemoveAll(filepath.Join(os.TempDir(), fmt.Sprintf("wsd-%d", os.Getpid())))
		m.log.Warn("binary upgrade: the workers predate this binary's master protocol (no heartbeats, pub/sub relay or metrics); replacing them")
		m.requestRoll(false)
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
			// rawFD rather than Fd: should the exec fail, the master goes
			// on reading these with deadlines, which need them
			// non-blocking.
			if p.status != nil {
				fd, err := rawFD(p.status)
				if err != nil {
					return fmt.Errorf("master: worker %d's status pipe: %w", p.pid, err)
				}
				is.Status = fd
				fds = append(fds, fd)
			}
			if p.broker != nil {
				fd, err := rawFD(p.broker)
				if err != nil {
					return fmt.Errorf("master: worker %d's broker socket: %w", p.pid, err)
				}
				is.Broker = fd
				fds = append(fds, fd)
			}
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
	ch := inheritChannels{State: stateDigest(string(b)), Reloads: &inheritReloads{
		Generation: m.reloads.gen, Issued: m.reloads.issued, Count: m.reloads.count, Last: m.reloads.last,
		Workers: make(map[string]uint64),
	}}
	for p := range m.procs {
		ch.Reloads.Workers[strconv.Itoa(p.pid)] = p.gen
	}
	for _, is := range st.Slots {
		if is.PID > 0 && (is.Status != 0 || is.Broker != 0) {
			ch.Workers = append(ch.Workers, inheritChannel{PID: is.PID, Status: is.Status, Broker: is.Broker})
		}
	}
	chb, err := json.Marshal(ch)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			restoreCloseOnExec(fds)
			return fmt.Errorf("master: keeping descriptor %d across exec: %w", fd, err)
		}
	}
	env := append(envWithout(os.Environ(), envUpgrade+"=", envUpgradeChannels+"="),
		envUpgrade+"="+string(b), envUpgradeChannels+"="+string(chb))
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
