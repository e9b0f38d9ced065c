package wsext

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

// Settings are what one upgrade needs: the callbacks of the new connection and
// its opaque user data. They are the spec's struct WebsocketSettings; the
// request and the response are the *fasthttp.RequestCtx given to Upgrade.
type Settings struct {
	// OnOpen is called once the connection is established, before any
	// OnMessage.
	OnOpen func(ws *Conn)
	// OnMessage is called for every complete incoming message. data is only
	// valid until OnMessage returns: copy it to keep it. isText reports a text
	// message, which is always valid UTF-8.
	OnMessage func(ws *Conn, data []byte, isText bool)
	// OnShutdown is called when the server shuts down while the connection is
	// open, before OnClose.
	OnShutdown func(ws *Conn)
	// OnClose is called exactly once when the connection ends, and also when
	// the upgrade fails (then ws has no network connection behind it).
	OnClose func(ws *Conn)
	// OnDrain is called when the bytes queued for a slow peer have all been
	// sent, after a Write that could not send at once (see
	// Conn.BufferedAmount). A writer that waits for it before writing more
	// paces itself to its reader and is never closed for backpressure.
	OnDrain func(ws *Conn)
	// UData is the connection's initial user data (see Conn.UData).
	UData any
}

// Default is the Server behind the package-level functions, the spec's global
// Websocket object.
var Default = NewServer(Options{})

// Upgrade upgrades ctx's request on the Default server. See Server.Upgrade.
func Upgrade(ctx *fasthttp.RequestCtx, settings Settings) error {
	return Default.Upgrade(ctx, settings)
}

// Each runs task for the connections of the Default server. See Server.Each.
func Each(originator *Conn, task func(ws *Conn, arg any), arg any, onFinish func(originator *Conn, arg any)) {
	Default.Each(originator, task, arg, onFinish)
}

// Count returns the number of open connections of the Default server.
func Count() int { return Default.Count() }

// MaxMsgSize returns the Default server's incoming message size limit.
func MaxMsgSize() int64 { return Default.MaxMsgSize() }

// SetMaxMsgSize sets the Default server's incoming message size limit.
func SetMaxMsgSize(n int64) { Default.SetMaxMsgSize(n) }

// Timeout returns the Default server's idle timeout.
func Timeout() time.Duration { return Default.Timeout() }

// SetTimeout sets the Default server's idle timeout for new connections.
func SetTimeout(d time.Duration) { Default.SetTimeout(d) }

// Shutdown gracefully closes every connection of the Default server.
func Shutdown(ctx context.Context) error { return Default.Shutdown(ctx) }
