// Package worker is one wsd process: it serves HTTP and WebSocket on a
// listener it is given (inherited from the master, or opened by a program
// of its own) and stops gracefully.
//
// It serves the spec's example: GET / answers "Hello World!", a WebSocket
// upgrade at / echoes every message with its type, and /broadcast writes
// every message to every other /broadcast connection of the process with
// wsext's Each. Any other path is 404. Every response names the process in
// a Wsd-Worker header.
package worker
