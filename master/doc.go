// Package master is wsd's pre-fork supervisor: the process `wsd serve`
// runs. It binds the listening sockets, starts the worker processes that
// serve on them, restarts the ones that die, and turns signals into graceful
// stops, configuration reloads and binary upgrades without refusing a
// connection.
//
// # Processes and sockets
//
// Run takes a configuration its caller has validated (once: `wsd serve`
// loads and validates it, and Options.Load does the same on each reload),
// and binds before it starts anything: a port in use or an address that
// cannot be bound makes it return an error naming them, and no worker is
// started.
//
// Each worker slot (one per process; --processes 0 means one per CPU) has a
// listening socket of its own, opened by the master with SO_REUSEPORT so that
// all of them share the port and the kernel spreads new connections over
// them. A worker is the same binary, re-executed with the hidden subcommand
// WorkerCommand, whose body is package worker's RunProcess: the worker
// process (its pub/sub engine, its metrics registry, its side of the
// broker) is assembled there, and the master links neither the WebSocket
// server nor the pub/sub engines. What both sides must agree on is in
// package internal/workerproto. A worker inherits four descriptors:
//
//	fd 3  its slot's listening socket
//	fd 4  the read end of a control pipe: the configuration as one JSON
//	      object, then control messages (a drain request, see Reload);
//	      end of file means the master is gone
//	fd 5  the write end of a status pipe, on which it writes "ready\n" once
//	      it accepts connections, then a heartbeat byte every second; or,
//	      if it cannot start, "failed <reason>\n" before it exits
//	fd 6  its end of a broker socket, a SOCK_SEQPACKET socketpair through
//	      which master and worker hand each other new connections
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
// Nothing between the master and its workers goes through the file system:
// no runtime directory, no socket path, nothing to clean up after a kill -9
// and nothing to create where there is no writable directory (a FROM
// scratch image, an empty environment, a read-only root). On the broker
// socket each message is one op byte carrying at most one descriptor
// (SCM_RIGHTS):
//
//	'R'  worker to master: connect me to the pub/sub relay
//	'R'  master to worker: one end of a new stream socketpair, whose other
//	     end the master has attached to its relay hub
//	'M'  master to worker: one end of a new stream socketpair on which the
//	     worker serves one metrics scrape, in HTTP
//
// A new stream for each relay session and each scrape, rather than one
// long-lived stream per purpose, is what lets a binary upgrade (below)
// replace the master's image mid-stream: a stream cut by the exec is
// simply replaced, while a stream carried across it could hold half a
// frame that neither side can find its way back from. The broker socket
// itself is carried across, since a datagram arrives whole or not at all.
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
// # Liveness
//
// A worker that is alive but no longer answers (SIGSTOPped, wedged, or
// paging itself to death) would keep its slot's share of new connections
// waiting for ever. So once ready, a worker writes a heartbeat byte on its
// status pipe every second (a fifth of --worker-timeout if that is
// shorter), from a goroutine with a ticker: a heartbeat proves that its Go
// runtime still schedules. The master reads each status pipe with a
// deadline of --worker-timeout (10s); when it passes with no heartbeat, the
// master logs it once with the worker's pid and slot, counts it in
// wsd_worker_hangs_total, kills the worker with SIGKILL (a stopped process
// cannot act on SIGTERM, and a hung one would not drain) and starts its
// replacement at once on the same slot socket, as for a crash, without
// waiting for the kernel to reap the old one. The connections queued in
// the socket's accept backlog meanwhile are served by the replacement.
// Until it is ready, /readyz answers 503 naming the slot and the hang. A
// hang counts towards the crash loop limit. --worker-timeout 0 turns the
// check off; the workers then send no heartbeats.
//
// A worker started from an older binary sends no heartbeats and closes its
// status pipe after "ready"; the master sees the end of file and does not
// watch it. A worker that is draining is not watched either: its own stop
// deadline applies.
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
// On SIGHUP the master loads the configuration (Options.Load, which
// validates it), then for each slot in turn starts a new worker on the
// slot's socket, waits until it reports ready, and only then asks the old
// worker to drain, with a message on its control pipe: the old worker
// stops accepting at once and closes its WebSockets with 1012 (Service
// Restart) spread evenly over the new configuration's --drain-period, so
// that clients, which reconnect when closed, reach the new worker a few at
// a time rather than all at once (nats-server's lame duck mode). The
// master allows it the drain period plus --shutdown-timeout, then kills
// it. A worker binary too old to know the message ignores it and gets
// SIGTERM when the period is over. A graceful stop (SIGTERM) closes every
// WebSocket with 1001 at once, as the daemon is going away.
//
// For a moment both workers accept from the same socket, so nothing is
// refused. A change of processes adds or removes slots (connections queued
// on a removed slot's socket at the instant it closes are reset). A change of
// address or port is refused: it needs a restart. If a new worker fails
// before it is ready, the reload stops there; slots already replaced keep
// their new worker, the others their old one. A SIGHUP during a reload is
// queued.
//
// Each reload or upgrade has an id and, once its configuration has loaded,
// a new configuration generation; every worker runs one generation. With
// --admin-address, GET /status (type Status) shows the master's pid and
// generation, the last reload's outcome (ok, invalid_config or failed, with
// the reason: the validation error, or the line a failed worker wrote on
// its status pipe) and each worker's generation; `wsd reload` reads it
// before and after its SIGHUP to report the outcome. The admin address
// offers nothing that acts on the daemon: it may be reachable beyond
// localhost, and a reload takes a signal, which the kernel authorizes.
//
// With --pid-file the master writes its pid to that file once its sockets
// are bound (to a temporary file renamed over it, so that a reader never
// sees half of it), moves it when a reload changes the setting, keeps it
// across a binary upgrade, and removes it when Run returns, if it still
// holds its pid.
//
// # Binary upgrade
//
// On SIGUSR2 the master first rolls every slot over to workers started from
// the binary now at its path on disk, exactly like a reload, so that a new
// binary that cannot even start a worker is found out while the old one still
// serves. Then it re-executes itself in place with execve(2): the pid does not
// change, the slot sockets and, for each worker, the master's ends of its
// control pipe, its status pipe and its broker socket are kept across the
// exec (their close-on-exec flag cleared, their numbers passed in the
// environment), and the workers, being children of the same pid, are
// adopted by the new image, which goes on supervising them and watching
// their heartbeats. The pub/sub relay's connections and any metrics scrape
// in flight close at the exec; the workers reconnect through their broker
// sockets. Workers that an older master image started without a broker
// socket are adopted and then replaced at once, slot by slot, as in a
// reload. The generations, the reload count and the upgrade's record go
// across the exec in WSD_UPGRADE_CHANNELS, so that GET /status goes on.
//
// The sockets, pids and control pipes travel in WSD_UPGRADE_STATE, the
// status pipes and broker sockets in WSD_UPGRADE_CHANNELS. Binaries from
// before the latter refuse unknown fields in the former, so keeping them
// apart lets a binary upgrade go back to such a binary (a rollback): it
// ignores the channels and leaves their descriptors unused.
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
// through the master (package pubsub/cluster): each worker asks for a
// connection on its broker socket and gets one end of a new socketpair,
// whose other end the master attaches to its hub. On it the worker sends
// the channels it subscribes to and what it publishes; the master writes
// each publish to every other worker subscribed to its channel. A hub in
// the master rather than a mesh between workers because the master is the
// one process that outlives them all: a worker that restarts needs one
// connection, from the one process it already has a socket to, not its
// siblings' (which change on every restart and reload), and each worker
// needs one connection, not one per sibling, which also keeps one worker's
// messages in order. The cost is one extra hop through the master, which
// copies plain messages without parsing them. With --history-size the hub
// also keeps each channel's history (internal/history), numbers every
// message and answers the workers' history requests, so the history
// outlives worker restarts and reloads (not a binary upgrade: the new
// image starts new epochs); with --presence it keeps who subscribes, and
// drops a worker's entries with its connection. The relay runs whatever the
// configuration, since a reload may change the number of processes. A
// worker that dies ends its connection, and the hub drops it with its
// subscriptions; its replacement gets a socketpair of its own. On a binary
// upgrade the exec closes the master's ends, and the workers ask the new
// image for new connections (with backoff up to a second) and subscribe
// again; publishes during that gap fail. With --redis every worker talks to
// Redis instead (package pubsub/redis).
//
// # Metrics
//
// With --admin-address, each worker keeps its metrics in a registry of its
// own. For each scrape of the admin address the master sends every ready
// worker one end of a new socketpair ('M' on the broker socket) and speaks
// HTTP on the other: a GET answered by promhttp in the delimited protobuf
// format, on a connection used once (package admin). HTTP on a one-off
// connection is the simple and robust choice: the exposition format, its
// negotiation and its size limits are promhttp's and admin's as they were
// over a unix socket path, and a scrape that times out or is cut by an
// exec leaves nothing behind on a stream that the next scrape would read.
//
// # systemd
//
// With NOTIFY_SOCKET set the master speaks sd_notify(3): READY=1 once every
// worker has reported ready; RELOADING=1 (with MONOTONIC_USEC, which systemd
// 253's Type=notify-reload requires) when a reload or upgrade starts and
// READY=1 when it ends, failed or not, with a STATUS= line saying which;
// STOPPING=1 when it stops. With WatchdogSec= set, systemd passes
// WATCHDOG_USEC (and WATCHDOG_PID, which must then be the master's pid),
// and the master's event loop sends WATCHDOG=1 every half of that, so that
// systemd restarts a master whose loop is stuck, not only one that died;
// the workers are the master's to watch. Workers see neither NOTIFY_SOCKET
// nor the WATCHDOG_ variables. systemd/wsd.service in the repository uses
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
