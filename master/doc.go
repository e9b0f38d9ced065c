// Package master is wsd's pre-fork supervisor: the process `wsd serve`
// runs. It binds the listening sockets, starts the worker processes that
// serve on them, restarts the ones that die, and turns signals into graceful
// stops, configuration reloads and binary upgrades without refusing a
// connection.
//
// # Processes and sockets
//
// Run validates the configuration and binds before it starts anything: a
// port in use or an address that cannot be bound makes it return an error
// naming them, and no worker is started.
//
// Each worker slot (one per process; --processes 0 means one per CPU) has a
// listening socket of its own, opened by the master with SO_REUSEPORT so that
// all of them share the port and the kernel spreads new connections over
// them. A worker is the same binary, re-executed with the hidden subcommand
// WorkerCommand. It inherits three descriptors:
//
//	fd 3  its slot's listening socket
//	fd 4  the read end of a control pipe: the configuration as one JSON
//	      object, then nothing; end of file means the master is gone
//	fd 5  the write end of a status pipe, on which it writes "ready\n" once
//	      it accepts connections
//
// The master keeps its own descriptor of every slot socket for as long as the
// slot exists. That is why no connection is refused while a worker restarts:
// the kernel keeps hashing a share of the new connections to a slot whose
// worker is dead, and they wait in that socket's accept queue (up to
// net.core.somaxconn of them) until the replacement accepts them, tens of
// milliseconds later. Sockets owned by the workers would lose that queue with
// their worker. One socket shared by every worker would keep it too, but its
// queue goes to whichever worker wakes first, which piles long-lived
// WebSockets onto a few workers; the kernel's hash over per-slot sockets
// spreads them evenly.
//
// Workers are started from /proc/self/exe, the master's own image, so that
// they always match their master even after the file on disk is replaced.
// Each runs in a process group of its own: Ctrl-C in a terminal sends SIGINT
// to the master only, which decides what the workers get. Workers do not
// see NOTIFY_SOCKET. Their stdout and stderr are the master's, and every log
// line a worker writes carries worker=<pid> (and slot=<n>); the master's
// lines carry master=<pid>.
//
// A worker whose master dies without stopping it (kill -9, a crash) sees end
// of file on its control pipe and stops gracefully. This lifeline replaces
// PR_SET_PDEATHSIG, which fires when the thread that forked exits rather than
// the process.
//
// # Supervision
//
// A worker that exits without being asked to is replaced: at once the first
// time, then after Options.RestartDelay (100ms) doubling up to
// Options.MaxRestartDelay (5s) for each further failure of the same slot
// within Options.CrashWindow (30s). A worker that does not report ready
// within Options.StartTimeout (30s) is killed and counts as a failure. The
// other workers and their connections are untouched. When a slot fails
// Options.CrashLimit times (5) within the window, the master stops every
// worker gracefully and Run returns an error wrapping ErrCrashLoop.
//
// # Signals
//
//	SIGTERM, SIGINT  graceful stop: the master sends SIGTERM to every worker,
//	                 which stops accepting and gives each WebSocket OnShutdown,
//	                 a close 1001 and OnClose, within --shutdown-timeout; a
//	                 worker still running a second after that is killed. Run
//	                 returns nil.
//	second SIGTERM or SIGINT, SIGQUIT
//	                 stop at once: every worker gets SIGKILL; Run returns an
//	                 error wrapping ErrStoppedAtOnce.
//	SIGHUP           reload: re-read the configuration (Options.Load) and
//	                 replace the workers one slot at a time.
//	SIGUSR2          binary upgrade: the same, from the binary now on disk,
//	                 then the master re-executes itself.
//
// # Reload
//
// On SIGHUP the master loads and validates the configuration, then for each
// slot in turn starts a new worker on the slot's socket, waits until it
// reports ready, and only then sends the old worker SIGTERM. For a moment
// both accept from the same socket, so nothing is refused; the old worker's
// WebSockets get a 1001 close when it stops, which clients take as a cue to
// reconnect. A change of processes adds or removes slots (connections queued
// on a removed slot's socket at the instant it closes are reset). A change of
// address or port is refused: it needs a restart. If a new worker fails
// before it is ready, the reload stops there; slots already replaced keep
// their new worker, the others their old one. A SIGHUP during a reload is
// queued.
//
// # Binary upgrade
//
// On SIGUSR2 the master first rolls every slot over to workers started from
// the binary now at its path on disk, exactly like a reload, so that a new
// binary that cannot even start a worker is found out while the old one still
// serves. Then it re-executes itself in place with execve(2): the pid does not
// change, the slot sockets and the workers' control pipes are kept across the
// exec (their close-on-exec flag cleared, their numbers passed in the
// environment variable WSD_UPGRADE_STATE), and the workers, being children of
// the same pid, are adopted by the new image, which goes on supervising them.
//
// This is the trade-off against nginx's and tableflip's new-master-beside-
// the-old design. Keeping the pid means systemd's MAINPID stays right with
// Type=notify and no PIDFile=, and a container whose PID 1 is the master does
// not stop when the old master exits. The price is that a new binary whose
// master fails to start (after its worker did) takes the service down, as
// its workers then see their lifeline end and stop; with Restart=on-failure
// systemd starts it again. The worker protocol above must stay compatible
// between the old master and the new worker binary for the upgrade's first
// half.
//
// # Pub/sub relay
//
// With more than one worker and no --redis, the workers' pub/sub goes
// through the master (package pubsub/cluster): the master listens on
// pubsub.sock in its runtime directory, and each worker keeps one
// connection to it, on which it sends the channels it subscribes to and
// what it publishes; the master writes each publish to every other worker
// subscribed to its channel. A hub in the master rather than a mesh
// between workers because the master is the one process that outlives
// them all: a worker that restarts needs one socket to find, not its
// siblings' (which change on every restart and reload), and each worker
// needs one connection, not one per sibling, which also keeps one
// worker's messages in order. The cost is one extra hop through the
// master, which does not parse messages, only copies them. The relay runs
// whatever the configuration, since a reload may change the number of
// processes. On a binary upgrade the re-executed master listens again on
// the same path, and the workers reconnect (with backoff up to a second)
// and subscribe again; publishes during that gap fail. With --redis every
// worker talks to Redis instead (package pubsub/redis).
//
// # systemd
//
// With NOTIFY_SOCKET set the master speaks sd_notify(3): READY=1 once every
// worker has reported ready; RELOADING=1 (with MONOTONIC_USEC, which systemd
// 253's Type=notify-reload requires) when a reload or upgrade starts and
// READY=1 when it ends, failed or not, with a STATUS= line saying which;
// STOPPING=1 when it stops. systemd/wsd.service in the repository uses
// Type=notify and KillMode=mixed: SIGTERM to the master alone, SIGKILL to
// every process left after TimeoutStopSec.
//
// # PID 1
//
// As a container's entrypoint the master is PID 1: it handles SIGTERM and
// SIGINT itself (the kernel gives PID 1 no default action), forwards them as
// described above, reaps every child including orphans it never started,
// and exits 0 after a graceful stop and non-zero otherwise.
package master
