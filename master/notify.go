package master

import (
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// notifier speaks the sd_notify(3) protocol: one datagram of
// newline-separated KEY=VALUE assignments to the unix socket systemd names in
// NOTIFY_SOCKET. Its zero value sends nothing, which is what a master started
// outside systemd wants.
type notifier struct {
	addr *net.UnixAddr
}

// newNotifier reads NOTIFY_SOCKET. A leading '@' names a Linux abstract
// socket; Go's net package maps it to the leading NUL byte the kernel wants.
// The variable is left in the master's environment so that a binary upgrade
// (which keeps the master's pid) can notify too; workers never see it.
func newNotifier() (notifier, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return notifier{}, nil
	}
	if name[0] != '/' && name[0] != '@' {
		return notifier{}, fmt.Errorf("master: NOTIFY_SOCKET=%q: only unix socket paths and @abstract names are supported", name)
	}
	return notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}, nil
}

// send writes the assignments as one datagram.
func (n notifier) send(assignments ...string) error {
	if n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("master: sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("master: sd_notify: %w", err)
	}
	return nil
}

// ready tells systemd the service is up (again, after a reload).
func (n notifier) ready(status string) error {
	return n.send("READY=1", "STATUS="+status)
}

// reloading tells systemd a reload started. systemd 253's Type=notify-reload
// requires MONOTONIC_USEC next to it; older versions ignore it.
func (n notifier) reloading(status string) error {
	return n.send("RELOADING=1", "MONOTONIC_USEC="+monotonicUsec(), "STATUS="+status)
}

// stopping tells systemd the service is going down.
func (n notifier) stopping(status string) error {
	return n.send("STOPPING=1", "STATUS="+status)
}

// watchdog keeps systemd's watchdog (WatchdogSec=) from firing.
func (n notifier) watchdog() error {
	return n.send("WATCHDOG=1")
}

// enabled reports whether n sends anything.
func (n notifier) enabled() bool { return n.addr != nil }

// watchdogInterval returns how often to send WATCHDOG=1: half of
// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or 0 when systemd set
// no watchdog, or set one for another process (WATCHDOG_PID). Like
// NOTIFY_SOCKET, the variables stay in the master's environment for its
// binary upgrade, which keeps its pid; workers never see them.
func watchdogInterval() (time.Duration, error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" {
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("master: WATCHDOG_PID=%q: not a pid", pid)
		}
		if n != os.Getpid() {
			return 0, nil
		}
	}
	n, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("master: WATCHDOG_USEC=%q: not a positive number of microseconds", usec)
	}
	// A timer below a millisecond would spin; systemd's own floor is
	// far above it anyway.
	d := time.Duration(min(n, math.MaxInt64/uint64(time.Microsecond))) * time.Microsecond
	return max(d/2, time.Millisecond), nil
}

// status updates the one-line status systemctl shows.
func (n notifier) status(status string) error {
	return n.send("STATUS=" + status)
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd compares
// MONOTONIC_USEC with.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "0"
	}
	return fmt.Sprint(ts.Nano() / 1000)
}
