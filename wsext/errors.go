package wsext

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by Write and Close on a connection that is
	// closing or closed.
	ErrClosed = errors.New("wsext: connection closed")
	// ErrBackpressure is returned by Write when the bytes queued for a slow
	// reader would pass Options.MaxBackpressure; the connection is closed with
	// ClosePolicyViolation.
	ErrBackpressure = errors.New("wsext: too many bytes queued for a slow reader")
	// ErrReleased is returned by WritePrepared for a PreparedMessage after
	// its Release.
	ErrReleased = errors.New("wsext: prepared message written after Release")
	// ErrShutdown is returned by Upgrade once the server is shutting down.
	ErrShutdown = errors.New("wsext: server is shutting down")
	// ErrInvalidUTF8 is returned by Write for a text message that is not
	// valid UTF-8: the spec promises is_text means UTF-8 on both ends.
	ErrInvalidUTF8 = errors.New("wsext: text message is not valid UTF-8")
)

// HandshakeError is returned by Upgrade when the request is not a valid
// WebSocket handshake. The HTTP error response has already been written.
type HandshakeError struct {
	Status int        // HTTP status sent: 400, 403, 405, 426 or 503
	Kind   FailReason // the kind of failure, as counted in Stats
	Reason string     // what was wrong with the request
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("wsext: bad handshake (%d): %s", e.Status, e.Reason)
}

// closeError is a reason to fail a connection: the close code to send.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("close %d: %s", e.code, e.reason) }

func protocolError(reason string) error { return &closeError{CloseProtocolError, reason} }
