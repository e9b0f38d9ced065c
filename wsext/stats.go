package wsext

import (
	"errors"
	"sync/atomic"
)

// counters are a Server's running totals, kept with atomics so that the hot
// paths pay one uncontended add each.
type counters struct {
	upgrades           atomic.Uint64
	upgradeFailures    [upgradeReasons]atomic.Uint64
	closed             atomic.Uint64
	msgsIn, msgsOut    atomic.Uint64
	bytesIn, bytesOut  atomic.Uint64
	pingsSent          atomic.Uint64
	timeouts           atomic.Uint64
	backpressureCloses atomic.Uint64
	tooBig             atomic.Uint64
	pongsSkipped       atomic.Uint64
	taskOverflows      atomic.Uint64
	panics             atomic.Uint64
	loopStalls         atomic.Uint64
	recoveries         [recoveryOutcomes]atomic.Uint64
	closesSent         closeCounter
	closesReceived     closeCounter
}

// FailReason is why an upgrade failed.
type FailReason uint8

// The reasons an upgrade fails, each with its HTTP status.
const (
	FailBadRequest FailReason = iota // malformed handshake: 400
	FailMethod                       // not GET: 405
	FailVersion                      // unsupported version: 426
	FailOrigin                       // origin refused: 403
	FailShutdown                     // server shutting down: 503
	upgradeReasons
)

// FailReasons lists every FailReason, for metrics that export each one,
// zero or not.
func FailReasons() []FailReason {
	return []FailReason{FailBadRequest, FailMethod, FailVersion, FailOrigin, FailShutdown}
}

// String names the reason, as in Stats.UpgradeFailures and metrics labels.
func (r FailReason) String() string {
	switch r {
	case FailBadRequest:
		return "bad_request"
	case FailMethod:
		return "method"
	case FailVersion:
		return "version"
	case FailOrigin:
		return "origin"
	case FailShutdown:
		return "shutdown"
	}
	return "unknown"
}

// failReason is the reason behind an HTTP status Upgrade answered with.
func failReason(status int) FailReason {
	switch status {
	case 405:
		return FailMethod
	case 426:
		return FailVersion
	case 403:
		return FailOrigin
	case 503:
		return FailShutdown
	}
	return FailBadRequest
}

// RecoveryOutcome is how a subscription that asked to start from a
// position (SubscribeOptions.Since) began.
type RecoveryOutcome uint8

// The outcomes of a recovery.
const (
	RecoveryDone     RecoveryOutcome = iota // every missed message replayed
	RecoveryMissed                          // not recovered: another epoch, too old, or too much at once
	RecoveryOverflow                        // too much arrived meanwhile: the subscriber must come back
	RecoveryFailed                          // the engine could not answer
	recoveryOutcomes
)

// RecoveryOutcomes lists every RecoveryOutcome, for metrics that export
// each one.
func RecoveryOutcomes() []RecoveryOutcome {
	return []RecoveryOutcome{RecoveryDone, RecoveryMissed, RecoveryOverflow, RecoveryFailed}
}

// String names the outcome, as in Stats.Recoveries and metrics labels.
func (o RecoveryOutcome) String() string {
	switch o {
	case RecoveryDone:
		return "recovered"
	case RecoveryMissed:
		return "not_recovered"
	case RecoveryOverflow:
		return "overflow"
	case RecoveryFailed:
		return "failed"
	}
	return "unknown"
}

// countRecovery counts the outcome of a subscription that asked for since.
func (c *counters) countRecovery(since *Position, rec Recovery, err error) {
	if since == nil {
		return
	}
	switch {
	case errors.Is(err, ErrRecoveryOverflow):
		c.recoveries[RecoveryOverflow].Add(1)
	case err != nil && !errors.Is(err, ErrNoHistory) && !errors.Is(err, ErrClosed):
		c.recoveries[RecoveryFailed].Add(1)
	case rec.Recovered:
		c.recoveries[RecoveryDone].Add(1)
	default:
		c.recoveries[RecoveryMissed].Add(1)
	}
}

func (c *counters) recoverySnapshot() map[string]uint64 {
	m := make(map[string]uint64, recoveryOutcomes)
	for _, o := range RecoveryOutcomes() {
		m[o.String()] = c.recoveries[o].Load()
	}
	return m
}

// closeCounter counts close frames by code: 1000-1015 each, then one slot
// for application codes (3000-4999) and one for frames with no code.
type closeCounter [18]atomic.Uint64

const (
	closeSlotApp    = 16
	closeSlotNoCode = 17
)

func (cc *closeCounter) add(code int) {
	switch {
	case code == 0:
		cc[closeSlotNoCode].Add(1)
	case code >= 1000 && code <= 1015:
		cc[code-1000].Add(1)
	default:
		cc[closeSlotApp].Add(1)
	}
}

func (cc *closeCounter) snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for i := range cc {
		n := cc[i].Load()
		if n == 0 {
			continue
		}
		switch i {
		case closeSlotApp:
			m["application"] = n
		case closeSlotNoCode:
			m["none"] = n
		default:
			m[itoa(1000+i)] = n
		}
	}
	return m
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Stats is a snapshot of a Server's counters since it was created.
type Stats struct {
	Open               int               // connections open now
	Upgrades           uint64            // successful upgrades
	UpgradeFailures    map[string]uint64 // failed upgrades by reason (FailReason.String)
	Closed             uint64            // connections ended
	MessagesIn         uint64            // complete messages received
	MessagesOut        uint64            // messages sent
	BytesIn            uint64            // bytes read from WebSocket connections, frames included
	BytesOut           uint64            // bytes of messages sent, frame headers included
	PingsSent          uint64            // idle pings
	Timeouts           uint64            // connections closed for not answering a ping
	BackpressureCloses uint64            // connections closed for reading too slowly
	TooBig             uint64            // messages over the size limit
	PongsSkipped       uint64            // pings not answered because a pong was still queued
	TaskOverflows      uint64            // Each tasks refused to a connection with maxTasks queued (it is closed)
	Panics             uint64            // panics recovered in callbacks, tasks and onFinish
	LoopStalls         uint64            // event loops handed to a new goroutine because a callback blocked them
	Recoveries         map[string]uint64 // subscriptions asked to start from a position, by outcome (RecoveryOutcome.String)
	ClosesSent         map[string]uint64 // close frames sent, by code ("1000", ..., "application", "none")
	ClosesReceived     map[string]uint64 // close frames received, by code
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	fails := make(map[string]uint64)
	for i := range st.upgradeFailures {
		if n := st.upgradeFailures[i].Load(); n > 0 {
			fails[FailReason(i).String()] = n
		}
	}
	return Stats{
		Open:               s.Count(),
		Upgrades:           st.upgrades.Load(),
		UpgradeFailures:    fails,
		Closed:             st.closed.Load(),
		MessagesIn:         st.msgsIn.Load(),
		MessagesOut:        st.msgsOut.Load(),
		BytesIn:            st.bytesIn.Load(),
		BytesOut:           st.bytesOut.Load(),
		PingsSent:          st.pingsSent.Load(),
		Timeouts:           st.timeouts.Load(),
		BackpressureCloses: st.backpressureCloses.Load(),
		TooBig:             st.tooBig.Load(),
		PongsSkipped:       st.pongsSkipped.Load(),
		TaskOverflows:      st.taskOverflows.Load(),
		Panics:             st.panics.Load(),
		LoopStalls:         st.loopStalls.Load(),
		Recoveries:         st.recoverySnapshot(),
		ClosesSent:         st.closesSent.snapshot(),
		ClosesReceived:     st.closesReceived.snapshot(),
	}
}
