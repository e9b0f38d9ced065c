package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsd-server/wsd/bench/stats"
)

// EchoOptions describes an echo run: Conns connections each send a Size-byte
// message and wait for it to come back (closed loop), for Duration.
type EchoOptions struct {
	// URL is the server's echo endpoint, e.g. ws://127.0.0.1:8080/.
	URL string
	// Conns is the number of connections; 0 means 1.
	Conns int
	// Size is the message payload size in bytes.
	Size int
	// Depth is how many messages each connection keeps in flight; 0 means 1.
	Depth int
	// Text sends text messages (the payload is ASCII) instead of binary.
	Text bool
	// Duration is how long messages are sent, after every connection is open.
	Duration time.Duration
	// ServerPID, if positive, is the server whose CPU time is measured.
	ServerPID int
	// Counter, if not nil, is incremented per echoed message.
	Counter *atomic.Int64
	// Dial tunes the connections.
	Dial DialOptions
}

// EchoResult is what an echo run measured.
type EchoResult struct {
	// Messages is the number of round trips completed within Duration.
	Messages int64
	// Bytes is Messages times the payload size (one direction).
	Bytes int64
	// Elapsed is the measured interval.
	Elapsed time.Duration
	// Latency holds the round-trip time of every counted message.
	Latency *stats.Histogram
	// ServerCPU is the server's CPU time over the interval (0 without a pid).
	ServerCPU time.Duration
}

// MsgPerSec returns the round trips per second.
func (r EchoResult) MsgPerSec() float64 { return perSecond(r.Messages, r.Elapsed) }

// MBPerSec returns the echoed payload in megabytes (10^6) per second, one
// direction.
func (r EchoResult) MBPerSec() float64 { return perSecond(r.Bytes, r.Elapsed) / 1e6 }

// CPUPerMsg returns the server CPU time per round trip.
func (r EchoResult) CPUPerMsg() time.Duration {
	if r.Messages == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Messages)
}

// Echo runs an echo benchmark. Every echo must equal what was sent; the
// first mismatch or connection failure ends the run with an error.
func Echo(ctx context.Context, o EchoOptions) (EchoResult, error) {
	if o.Duration <= 0 {
		return EchoResult{}, errors.New("load: echo needs a positive duration")
	}
	conns := max(o.Conns, 1)
	depth := max(o.Depth, 1)
	if o.Dial.ReadBuffer == 0 && o.Size > 4096 {
		o.Dial.ReadBuffer = min(o.Size+ws.MaxHeaderSize, 64<<10)
	}
	cs, err := DialMany(ctx, o.URL, conns, o.Dial, nil)
	if err != nil {
		return EchoResult{}, err
	}
	defer CloseAll(cs)

	payload := make([]byte, o.Size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	op := ws.OpBinary
	if o.Text {
		op = ws.OpText
	}
	res := EchoResult{Latency: new(stats.Histogram)}
	var (
		total atomic.Int64
		errs  firstError
		wg    sync.WaitGroup
	)
	meter := startCPU(o.ServerPID)
	start := time.Now()
	end := start.Add(o.Duration)
	for i, c := range cs {
		wg.Go(func() {
			n, err := echoLoop(ctx, c, op, payload, depth, end, res.Latency, o.Counter)
			total.Add(n)
			if err != nil {
				errs.set(fmt.Errorf("load: echo connection %d: %w", i+1, err))
			}
		})
	}
	wg.Wait()
	res.Elapsed = o.Duration
	res.ServerCPU, err = meter.stop()
	res.Messages = total.Load()
	res.Bytes = res.Messages * int64(o.Size)
	if err != nil {
		errs.set(fmt.Errorf("load: server CPU: %w", err))
	}
	if ctx.Err() != nil {
		errs.set(ctx.Err())
	}
	return res, errs.get()
}

// echoLoop keeps depth messages in flight on c until end and returns the
// number of round trips completed by then.
func echoLoop(ctx context.Context, c *Conn, op ws.OpCode, payload []byte, depth int, end time.Time,
	lat *stats.Histogram, counter *atomic.Int64) (int64, error) {
	// A server that stops answering must not hold the run past its end.
	c.nc.SetDeadline(end.Add(5 * time.Second))
	frame := c.AppendFrame(nil, op, payload)
	sent := make([]time.Time, depth)
	buf := make([]byte, 0, len(payload))
	for i := range sent {
		sent[i] = time.Now()
		if err := c.WriteFrame(frame); err != nil {
			return 0, err
		}
	}
	var n int64
	for i := 0; ; i++ {
		gotOp, msg, err := c.Read(buf)
		now := time.Now()
		if err != nil {
			return n, err
		}
		if gotOp != op || !bytes.Equal(msg, payload) {
			return n, fmt.Errorf("echo differs: opcode %d, %d bytes, want opcode %d, %d bytes", gotOp, len(msg), op, len(payload))
		}
		buf = msg
		if now.After(end) || ctx.Err() != nil {
			return n, nil
		}
		n++
		lat.Record(now.Sub(sent[i%depth]))
		if counter != nil {
			counter.Add(1)
		}
		sent[i%depth] = now
		if err := c.WriteFrame(frame); err != nil {
			return n, err
		}
	}
}
