// Package workerproto is the protocol between wsd's master and its worker
// processes: the descriptors a worker inherits, the messages on its control
// and status pipes, and the broker socket through which the two hand each
// other connections. Package master speaks the master's side and package
// worker the worker's; this package holds only what both must agree on, so
// that neither imports the other (the master links neither the WebSocket
// server nor the pub/sub engines).
//
// Either side may be the older binary during a binary upgrade, so every
// addition must be one the other side can ignore: new JSON fields, new
// control messages, new broker ops.
package workerproto

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsd-server/wsd/config"
)

// Command is the hidden subcommand of the wsd binary that the master
// re-executes for each worker.
const Command = "worker"

// The file descriptors a worker inherits, in exec.Cmd.ExtraFiles order.
const (
	ListenFD  = 3 // the slot's listening socket
	ControlFD = 4 // read end: a Spec as JSON, then Control messages; EOF when the master dies
	StatusFD  = 5 // write end: ReadyLine once the worker accepts connections, then heartbeats
	BrokerFD  = 6 // the worker's end of its broker socket, if Spec.Broker
)

// Spec is what the master sends first on the control pipe. A worker
// ignores fields it does not know and takes the zero value of those a
// master does not send, so that either side may be the older binary.
type Spec struct {
	Slot   int
	Config config.Config
	// Heartbeat is how often the worker writes a heartbeat on its status
	// pipe after "ready"; 0 means never, and the worker closes the pipe.
	Heartbeat time.Duration
	// Broker says that BrokerFD is the worker's broker socket, through
	// which it reaches the pub/sub hub and serves its metrics. A master
	// too old to send it passes no such descriptor.
	Broker bool
	// Processes is how many worker slots the master runs, Config.Processes
	// resolved; 0 from a master too old to send it.
	Processes int
}

// Control is a message the master may send on the control pipe after the
// Spec, one JSON object each. A worker too old to know them reads and
// discards them.
type Control struct {
	// Drain asks the worker to stop for a reload or an upgrade: it stops
	// accepting at once (its replacement already serves the same socket)
	// and closes its WebSockets with 1012 (Service Restart) spread evenly
	// over DrainPeriod, then stops as on SIGTERM. A SIGTERM that comes
	// after changes nothing.
	Drain bool `json:",omitempty"`
	// DrainPeriod is the time over which the closes are spread; 0 closes
	// them all at once.
	DrainPeriod time.Duration `json:",omitempty"`
}

// Status pipe: the worker writes ReadyLine once it accepts connections, then
// a HeartbeatByte every Spec.Heartbeat. A worker that cannot start writes
// a FailedPrefix line with its reason instead of ReadyLine, then exits; a
// master too old to know the line ignores it.
const (
	ReadyLine     = "ready\n"
	FailedPrefix  = "failed "
	HeartbeatByte = '.'
)

// FailedLine is the status line of a worker that cannot start: err's text on
// one line.
func FailedLine(err error) string {
	return FailedPrefix + strings.Join(strings.Fields(err.Error()), " ") + "\n"
}

// HeartbeatInterval is how often a worker with the given timeout beats:
// five beats per timeout, and at least one a second, so that a late beat or
// two on a loaded machine does not make a live worker look hung.
func HeartbeatInterval(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return 0
	}
	return min(time.Second, timeout/5)
}

// Broker ops. Every message on a broker socket is one op byte, with at most
// one descriptor attached (SCM_RIGHTS):
//
//	'R'  worker → master, no descriptor: connect me to the pub/sub hub
//	'R'  master → worker, a stream socket: the hub is at its other end
//	'M'  master → worker, a stream socket: serve your metrics (HTTP) on it
const (
	OpRelay   = 'R'
	OpMetrics = 'M'
)

// brokerWriteTimeout bounds a send on a broker socket. A message is a byte
// and a descriptor, so only a peer that has stopped reading makes a send
// wait at all.
const brokerWriteTimeout = 5 * time.Second

// FDConn makes a connection of the unix socket fd, which it takes over.
func FDConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // net.FileConn works on a duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("workerproto: %s: %w", name, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("workerproto: %s: descriptor %d is not a unix socket", name, fd)
	}
	return uc, nil
}

// SendFD sends op on the broker socket b, with the descriptor fd attached
// unless it is negative. The caller keeps fd and closes it.
func SendFD(b *net.UnixConn, op byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	// Scrapes and relay answers may send at once; a datagram socket keeps
	// their messages apart, and the last deadline set covers both.
	b.SetWriteDeadline(time.Now().Add(brokerWriteTimeout))
	if _, _, err := b.WriteMsgUnix([]byte{op}, oob, nil); err != nil {
		return fmt.Errorf("workerproto: broker: %w", err)
	}
	return nil
}

// RecvFD reads one message from the broker socket b: its op and the
// descriptor it carries, or -1. It returns io.EOF once the other side has
// closed. Descriptors received are close-on-exec (Go's ReadMsgUnix asks for
// MSG_CMSG_CLOEXEC on Linux), and any beyond the first are closed.
func RecvFD(b *net.UnixConn) (op byte, fd int, err error) {
	var buf [16]byte
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := b.ReadMsgUnix(buf[:], oob)
	fd = -1
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		for _, msg := range msgs {
			fds, _ := unix.ParseUnixRights(&msg)
			for _, f := range fds {
				if fd < 0 {
					fd = f
				} else {
					unix.Close(f)
				}
			}
		}
		if perr != nil && err == nil {
			err = fmt.Errorf("workerproto: broker: control message: %w", perr)
		}
	}
	switch {
	case err != nil:
	case n == 0:
		// A datagram socket reads an empty message at the peer's close.
		err = io.EOF
	case n > 1:
		err = fmt.Errorf("workerproto: broker: message of %d bytes", n)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return 0, -1, err
	}
	return buf[0], fd, nil
}

// WriteControl writes one control message on w, the master's end of a
// control pipe.
func WriteControl(w io.Writer, msg Control) error {
	if err := json.NewEncoder(w).Encode(msg); err != nil {
		return fmt.Errorf("workerproto: control message: %w", err)
	}
	return nil
}
