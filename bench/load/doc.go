// Package load generates the benchmark load: WebSocket echo, broadcast and
// idle connections, and HTTP GET requests, against any server on a URL.
//
// Its WebSocket client is built on github.com/gobwas/ws, a library unrelated
// to the servers under test (fasthttp/websocket and wsd's own engine), so a
// bug shared by client and server cannot hide. Frames are encoded into
// reused buffers and constant payloads are masked once, keeping the client's
// share of a machine it shares with the server small.
//
// Every mode takes an optional Counter it increments per completed unit
// (message, delivery, request, connection) for live progress, and an
// optional server pid whose process tree's CPU time is read before and
// after the measured interval.
package load
