package master

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenNotify makes a datagram socket like systemd's and returns the
// NOTIFY_SOCKET value naming it.
func listenNotify(t *testing.T, abstract bool) (string, *net.UnixConn) {
	t.Helper()
	var name string
	if abstract {
		name = fmt.Sprintf("@wsd-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	} else {
		dir, err := os.MkdirTemp("", "wsdn")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		name = filepath.Join(dir, "notify")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return name, conn
}

func TestNotifier(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprintf("abstract=%v", abstract), func(t *testing.T) {
			name, conn := listenNotify(t, abstract)
			t.Setenv("NOTIFY_SOCKET", name)
			n, err := newNotifier()
			if err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				send func() error
				want []string // line prefixes, in order
			}{
				{func() error { return n.ready("serving") }, []string{"READY=1", "STATUS=serving"}},
				{func() error { return n.reloading("reload") }, []string{"RELOADING=1", "MONOTONIC_USEC=", "STATUS=reload"}},
				{func() error { return n.stopping("bye") }, []string{"STOPPING=1", "STATUS=bye"}},
				{func() error { return n.status("busy") }, []string{"STATUS=busy"}},
				{n.watchdog, []string{"WATCHDOG=1"}},
			}
			buf := make([]byte, 4096)
			for _, tt := range tests {
				if err := tt.send(); err != nil {
					t.Fatal(err)
				}
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, err := conn.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(string(buf[:k]), "\n")
				if len(lines) != len(tt.want) {
					t.Fatalf("datagram %q, want lines starting %q", lines, tt.want)
				}
				for i, w := range tt.want {
					if !strings.HasPrefix(lines[i], w) {
						t.Errorf("datagram %q: line %d, want prefix %q", lines, i, w)
					}
				}
			}
		})
	}
}

func TestNotifierWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := newNotifier()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ready("x"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, want nothing sent and no error", err)
	}
}

func TestNotifierErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "relative/path")
	if _, err := newNotifier(); err == nil {
		t.Error("relative NOTIFY_SOCKET accepted")
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	n, err := newNotifier()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ready("x"); err == nil {
		t.Error("sending to a socket nobody listens on succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, false},
		{"30000000", self, 15 * time.Second, false},
		{"30000000", strconv.Itoa(os.Getpid() + 1), 0, false}, // meant for another process
		{"1000", "", time.Millisecond, false},
		{"1", "", time.Millisecond, false},
		{"18446744073709551615", "", 0, true}, // systemd's infinity is never sent
		{"0", "", 0, true},
		{"-5", "", 0, true},
		{"soon", "", 0, true},
		{"30000000", "nobody", 0, true},
	}
	for _, tt := range tests {
		t.Setenv("WATCHDOG_USEC", tt.usec)
		t.Setenv("WATCHDOG_PID", tt.pid)
		got, err := watchdogInterval()
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %s, %v; want %s, error %v", tt.usec, tt.pid, got, err, tt.want, tt.err)
		}
	}
}
