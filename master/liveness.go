package master

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/internal/workerproto"
)

// Liveness: after its "ready" line, a worker writes one heartbeat byte on
// its status pipe every workerproto.HeartbeatInterval, from a goroutine of its own, so
// that a heartbeat proves its Go runtime still schedules goroutines. The
// master reads the pipe with a deadline of the worker's WorkerTimeout; when
// the deadline passes with nothing read, the worker is hung (SIGSTOPped,
// wedged, swapped to death) and the master kills it and starts another on
// its slot's socket.

// watchStatus reads p's status pipe: the worker's "ready" line (unless
// ready is already true, for a worker adopted across an upgrade) or the
// line saying why it could not start, then its heartbeats. It reports
// evReady or evFailed, and evHang when timeout passes without a
// heartbeat. It returns after evHang, at end of file (the worker exited, or
// it is an older binary that sends no heartbeats and closed the pipe), or
// when release closes the pipe. A zero timeout watches no heartbeats.
func (m *master) watchStatus(p *proc, status *os.File, timeout time.Duration, ready bool) {
	if !ready {
		// Bytes read past the line are heartbeats, which the deadline
		// set below supersedes.
		line, _ := bufio.NewReader(status).ReadString('\n')
		if reason, failed := strings.CutPrefix(line, workerproto.FailedPrefix); failed {
			m.send(event{kind: evFailed, p: p, err: errors.New(strings.TrimSuffix(reason, "\n"))})
		}
		if p.statusDone != nil {
			close(p.statusDone)
		}
		if line != workerproto.ReadyLine {
			return
		}
		m.send(event{kind: evReady, p: p})
	}
	if timeout <= 0 {
		return
	}
	buf := make([]byte, 64)
	for {
		if err := status.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			m.log.Warn("cannot watch the worker's heartbeats", "worker", p.pid, "slot", p.slotIndex(), "err", err)
			return
		}
		_, err := status.Read(buf)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if readNow(status, buf) {
				continue
			}
			m.send(event{kind: evHang, p: p})
			return
		default:
			return
		}
	}
}

// readNow reads what the pipe f holds, without waiting, and reports whether
// it held anything. A master slowed down by a loaded machine can wake up
// for a deadline after heartbeats arrived; those count.
func readNow(f *os.File, buf []byte) bool {
	// An expired deadline would fail the read before it is tried.
	if f.SetReadDeadline(time.Time{}) != nil {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	rc.Read(func(fd uintptr) bool {
		n, _ = unix.Read(int(fd), buf)
		return true // do not wait for more
	})
	return n > 0
}

// hung handles a worker whose heartbeats stopped: it is logged, counted,
// killed with SIGKILL (a stopped process cannot act on SIGTERM, and a hung
// one would not drain anyway), and its slot gets a new worker at once
// rather than when the kernel gets round to reaping the old one. The
// clients queued in the slot socket's backlog meanwhile go to the new one.
func (m *master) hung(p *proc) {
	timeout := p.cfg.WorkerTimeout
	m.log.Error("worker hung: no heartbeat; killing it", "worker", p.pid, "slot", p.slotIndex(), "timeout", timeout)
	m.admin.hangs.Inc()
	p.failure = fmt.Sprintf("hung: no heartbeat for %s", timeout)
	p.stopping = true // its exit is dealt with here
	p.stopTimers()
	if err := p.process.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.log.Error("killing a hung worker", "worker", p.pid, "err", err)
	}
	if s := p.slot; s != nil && s.cur == p {
		s.cur = nil
		m.slotFailed(s, fmt.Sprintf("worker %d %s", p.pid, p.failure))
	}
}
