// Package baseline is the raw server wsd is measured against: fasthttp and
// github.com/fasthttp/websocket used the way their examples and most users
// use them. Each WebSocket connection gets a goroutine running a
// ReadMessage/WriteMessage loop; /broadcast keeps a mutex-guarded set of
// connections and writes every message to every other member with
// WriteMessage under that member's mutex.
//
// It serves the same routes as a wsd worker: GET / answers "Hello World!",
// a WebSocket at / echoes each message with its type, a WebSocket at
// /broadcast relays each message to every other /broadcast connection, and
// anything else is 404. Nothing in it is tuned; it is the reference the
// benchmark ratios are taken against.
package baseline
