// Package worker is one wsd process: it serves HTTP and WebSocket on a
// listener it is given (inherited from the master, or opened by a program
// of its own) and stops gracefully, or drains its WebSockets with 1012 over
// a period when a reload replaces it.
//
// It serves the spec's example and the gateway around it:
//
//	GET /                    "Hello World!", or --public's index.html
//	WebSocket /              echoes every message with its type
//	WebSocket /broadcast     every message to every other /broadcast
//	                         connection of the process (wsext's Each)
//	WebSocket /pubsub/{ch}   subscribes to ch and publishes what it sends;
//	                         ?format=json for offsets, &offset=&epoch= to
//	                         recover (with --history-size), &presence=1
//	                         for join and leave events (with --presence)
//	POST /publish/{ch}       publishes the body (--publish-token); with
//	                         history, answers its position
//	GET /sse/{ch}            the channel as Server-Sent Events
//	GET /presence/{ch}       who subscribes (--presence, presence.go)
//	anything else            a file under --public, or 404
//
// Subscribers may be required to present a JWT (auth.go). Every response
// names the process in a Wsd-Worker header. RunProcess assembles a worker
// process as the master starts it: the engine, the metrics and the
// descriptors it inherits (process.go).
package worker
