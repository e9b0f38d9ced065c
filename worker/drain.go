package worker

import (
	"context"
	"errors"
	"time"

	"github.com/wsd-server/wsd/wsext"
)

// Drain stops the worker for a reload or an upgrade, whose new worker
// already serves the same listening socket: it stops accepting and lets
// HTTP requests in flight finish, as Shutdown does, then closes every
// WebSocket with 1012 (Service Restart), spread evenly over period so that
// the clients reconnect to the new worker a few at a time rather than all
// at once (wsext.Server.Drain). ctx bounds the whole; it should allow
// period and then shutdown-timeout.
func (w *Worker) Drain(ctx context.Context, period time.Duration) error {
	w.sse.shutdown()
	httpErr := w.http.ShutdownWithContext(ctx)
	return errors.Join(httpErr, w.ws.Drain(ctx, period, wsext.CloseServiceRestart))
}
