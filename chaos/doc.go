// Package chaos is wsd's adversarial test suite: it runs the real wsd
// binary and attacks it the way a hostile or broken network would, while a
// few well-behaved clients check that nobody else notices.
//
// The suite is behind the build tag chaos, so `go test ./...` does not run
// it. Run it with
//
//	make chaos
//	go test -tags chaos -count=1 -timeout 900s -v ./chaos/           # the same
//	go test -tags chaos -count=1 -v -run TestPingFlood ./chaos/      # one scenario
//
// TestMain builds ./cmd/wsd once into a temporary directory. Each scenario
// then starts its own daemon (`wsd serve`) on a free port of 127.0.0.1,
// with its own --admin-address, and runs a good-client probe for the whole
// scenario: echo clients on / and a /pubsub channel fed by one publisher,
// every message numbered, so that a lost, repeated or reordered message, or
// one that takes more than 5 s, fails the scenario. Probe clients never
// reconnect: a client that was connected before an attack must still be
// connected after it.
//
// The attacks, one scenario each:
//
//   - TestDescriptorExhaustion: a daemon under RLIMIT_NOFILE 512 and more
//     connections than that, in rounds, held and released;
//   - TestBroadcastFlood: one /broadcast sender of 4 KiB messages, as fast
//     as it can, to 100 readers;
//   - TestPingFlood, TestPongFlood, TestCloseFlood: control frames as fast
//     as possible from clients that never read, and a churn of connections
//     that send a close frame and go;
//   - TestSlowReaders: /pubsub and /broadcast subscribers that never read,
//     while a publisher and a broadcaster send;
//   - TestDeflateReceivers: permessage-deflate receivers on /broadcast and
//     /pubsub, every byte checked against what was sent;
//   - TestStoppedWorker: SIGSTOP of one worker; new connections must
//     succeed again within 20 s;
//   - TestMasterKilled: SIGKILL of the master; its workers must go, leaving
//     nothing behind, and a new daemon must serve on the same port;
//   - TestRedisOutage: the daemon's Redis frozen, killed and restarted
//     (skipped, saying so, when redis-server is not installed);
//   - TestReplayStorm: 40 clients reconnecting in a loop from offset 0,
//     each asking for a 400 KiB history and listed in the presence, half
//     of them never reading; memory bounded, the presence empty after.
//
// At its end every scenario checks that the master and every worker are
// alive (and the same processes as at the start, unless the scenario
// replaces one), that the probe was unharmed, that the resident memory of
// the master and workers (the sum of VmRSS) came back to within 64 MB of
// its baseline within 20 s, that the daemon's descriptor count came back to
// within 8 of its baseline, and, once the daemon has stopped (SIGTERM, exit
// status 0), that none of its processes is left and nothing of it in the
// file system: no /tmp/wsd-<master pid>, none of the files and unix sockets
// its processes were seen to hold. The figures (peak memory growth and the
// rest; MB is 10⁶ bytes) are logged as the scenario runs and printed as a
// markdown table at the end of the run, ready to paste into the docs.
//
// `-args -wsd=PATH` attacks a given binary instead of building one.
//
// The clients are coder/websocket for the probe and the deflate receivers,
// and raw net.Conn framing for hostile clients: neither is the server's
// WebSocket code, so a bug the two share cannot hide. Everything runs on
// loopback; every loop is bounded in count and time; each scenario takes
// under a minute.
package chaos
