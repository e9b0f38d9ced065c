package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsd-server/wsd/bench/stats"
)

// warmupSeq marks the messages sent before the measured ones, until every
// receiver is known to be registered with the server; fenceSeq marks the
// one message after them, whose arrival everywhere means that no warm-up
// message is still in flight to eat into the measured interval.
const (
	warmupSeq = math.MaxUint64
	fenceSeq  = math.MaxUint64 - 1
)

// BroadcastOptions describes a broadcast run: Receivers connections listen
// on a broadcast endpoint while one more connection sends messages to it,
// which the server relays to every other connection.
type BroadcastOptions struct {
	// URL is the server's broadcast endpoint, e.g. ws://127.0.0.1:8080/broadcast.
	URL string
	// Receivers is the number of reading receivers; 0 means 1.
	Receivers int
	// Stuck is the number of extra receivers that never read. Their
	// deliveries are not counted or awaited.
	Stuck int
	// Size is the message payload size in bytes; at least 16.
	Size int
	// Window is how far the sender may run ahead: message k is sent only
	// once every receiver has message k-Window. 0 means 32.
	Window int
	// Messages caps the number of messages; 0 sends until Duration ends.
	Messages int
	// Duration bounds the measured interval.
	Duration time.Duration
	// ServerPID, if positive, is the server whose CPU time is measured.
	ServerPID int
	// Counter, if not nil, is incremented per delivery.
	Counter *atomic.Int64
	// Dial tunes the connections.
	Dial DialOptions
}

// BroadcastResult is what a broadcast run measured.
type BroadcastResult struct {
	// Sent is the number of messages sent within the interval.
	Sent int64
	// Deliveries is the number of messages the reading receivers got
	// within the interval.
	Deliveries int64
	// Elapsed is the interval: until Duration ran out, or until the last of
	// Messages reached every receiver.
	Elapsed time.Duration
	// Complete reports that every reading receiver got every sent message
	// (in order) by shortly after the interval.
	Complete bool
	// Missing is the number of deliveries still missing then.
	Missing int64
	// Latency holds the time from send to receipt of every counted delivery.
	Latency *stats.Histogram
	// ServerCPU is the server's CPU time over the interval (0 without a pid).
	ServerCPU time.Duration
}

// DeliveriesPerSec returns the deliveries per second.
func (r BroadcastResult) DeliveriesPerSec() float64 { return perSecond(r.Deliveries, r.Elapsed) }

// CPUPerDelivery returns the server CPU time per delivery.
func (r BroadcastResult) CPUPerDelivery() time.Duration {
	if r.Deliveries == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Deliveries)
}

// window tracks, per in-flight message, how many receivers have it. Slot
// k%len(slots) counts message k; the sender clears a slot before reusing it,
// which is safe because receivers get messages in order, so once message k
// is complete every earlier one is too.
type window struct {
	slots     []atomic.Int64
	receivers int64
	notify    chan struct{} // a slot became complete
}

func (w *window) delivered(seq uint64) {
	if w.slots[seq%uint64(len(w.slots))].Add(1) == w.receivers {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
}

func (w *window) complete(seq int64) bool {
	return w.slots[seq%int64(len(w.slots))].Load() >= w.receivers
}

// receiver is the state of one reading receiver.
type receiver struct {
	c      *Conn
	next   atomic.Uint64 // next expected sequence number
	warmed atomic.Bool
}

// Broadcast runs a broadcast benchmark. Each receiver checks it gets every
// message once, in order and intact; a violation ends the run with an error.
func Broadcast(ctx context.Context, o BroadcastOptions) (BroadcastResult, error) {
	if o.Duration <= 0 {
		return BroadcastResult{}, errors.New("load: broadcast needs a positive duration")
	}
	if o.Size < 16 {
		o.Size = 16
	}
	nrecv := max(o.Receivers, 1)
	win := o.Window
	if win <= 0 {
		win = 32
	}

	// Connect the stuck receivers first so they are surely registered by
	// the time the sender starts.
	var stuck []*Conn
	if o.Stuck > 0 {
		sd := o.Dial
		if sd.RecvBuffer == 0 {
			sd.RecvBuffer = 4096
		}
		var err error
		if stuck, err = DialMany(ctx, o.URL, o.Stuck, sd, nil); err != nil {
			return BroadcastResult{}, err
		}
		defer CloseAll(stuck)
	}
	rcs, err := DialMany(ctx, o.URL, nrecv, o.Dial, nil)
	if err != nil {
		return BroadcastResult{}, err
	}
	defer CloseAll(rcs)
	sender, err := Dial(ctx, o.URL, o.Dial)
	if err != nil {
		return BroadcastResult{}, err
	}
	defer sender.Abort()

	w := &window{slots: make([]atomic.Int64, 2*win), receivers: int64(nrecv), notify: make(chan struct{}, 1)}
	res := BroadcastResult{Latency: new(stats.Histogram)}
	var (
		delivered atomic.Int64
		warmed    atomic.Int64
		fenced    atomic.Int64
		stopping  atomic.Bool
		errs      firstError
		wg        sync.WaitGroup
	)
	fail := errs.set
	recvs := make([]*receiver, nrecv)
	for i, c := range rcs {
		r := &receiver{c: c}
		recvs[i] = r
		wg.Go(func() {
			err := r.run(o.Size, w, &warmed, &fenced, &delivered, res.Latency, o.Counter)
			if err != nil && !stopping.Load() {
				fail(fmt.Errorf("load: broadcast receiver %d: %w", i+1, err))
			}
		})
	}
	defer func() {
		stopping.Store(true)
		CloseAll(rcs)
		wg.Wait()
	}()

	frame := sender.AppendFrame(nil, ws.OpBinary, make([]byte, o.Size))
	body := frame[len(frame)-o.Size:]
	send := func(seq uint64) error {
		var head [16]byte
		binary.BigEndian.PutUint64(head[:8], seq)
		binary.BigEndian.PutUint64(head[8:], uint64(time.Now().UnixNano()))
		copy(body, head[:])
		ws.Cipher(body[:16], sender.Mask(), 0)
		return sender.WriteFrame(frame)
	}

	// Warm up: until every receiver has seen a warm-up message, the server
	// may not have registered all of them yet.
	warmDeadline := time.Now().Add(15 * time.Second)
	sender.nc.SetWriteDeadline(warmDeadline)
	for warmed.Load() < int64(nrecv) {
		if err := errs.get(); err != nil {
			return res, err
		}
		if time.Now().After(warmDeadline) || ctx.Err() != nil {
			return res, fmt.Errorf("load: only %d of %d broadcast receivers got a message within 15s", warmed.Load(), nrecv)
		}
		if err := send(warmupSeq); err != nil {
			return res, fmt.Errorf("load: broadcast sender: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := send(fenceSeq); err != nil {
		return res, fmt.Errorf("load: broadcast sender: %w", err)
	}
	for fenced.Load() < int64(nrecv) {
		if err := errs.get(); err != nil {
			return res, err
		}
		if time.Now().After(warmDeadline) || ctx.Err() != nil {
			return res, fmt.Errorf("load: only %d of %d broadcast receivers got the warm-up fence within 15s", fenced.Load(), nrecv)
		}
		time.Sleep(5 * time.Millisecond)
	}

	meter := startCPU(o.ServerPID)
	start := time.Now()
	end := start.Add(o.Duration)
	sender.nc.SetWriteDeadline(end.Add(5 * time.Second))
	timer := time.NewTimer(o.Duration)
	defer timer.Stop()
	var sent int64
	timedOut := false
send:
	for o.Messages == 0 || sent < int64(o.Messages) {
		if sent >= int64(win) {
			for !w.complete(sent - int64(win)) {
				select {
				case <-w.notify:
				case <-timer.C:
					timedOut = true
					break send
				case <-ctx.Done():
					break send
				}
			}
		}
		if time.Now().After(end) {
			timedOut = true
			break
		}
		w.slots[sent%int64(len(w.slots))].Store(0)
		if err := send(uint64(sent)); err != nil {
			fail(fmt.Errorf("load: broadcast sender: %w", err))
			break
		}
		sent++
	}
	// Without a timeout, wait for the last messages to reach everyone.
	for !timedOut && sent > 0 && !w.complete(sent-1) && errs.get() == nil {
		select {
		case <-w.notify:
		case <-timer.C:
			timedOut = true
		case <-ctx.Done():
			timedOut = true
		}
	}
	res.Elapsed = time.Since(start)
	if timedOut {
		res.Elapsed = o.Duration
	}
	res.Deliveries = delivered.Load()
	res.Sent = sent
	res.ServerCPU, err = meter.stop()
	if err != nil {
		fail(fmt.Errorf("load: server CPU: %w", err))
	}

	// Give stragglers a moment, then check that everyone got everything.
	want := uint64(sent)
	for drain := time.Now().Add(min(2*time.Second, max(o.Duration/2, 200*time.Millisecond))); time.Now().Before(drain) && errs.get() == nil; {
		if sent == 0 || w.complete(sent-1) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.Complete = true
	for _, r := range recvs {
		if got := r.next.Load(); got < want {
			res.Complete = false
			res.Missing += int64(want - got)
		}
	}
	if errs.get() == nil && ctx.Err() != nil {
		fail(ctx.Err())
	}
	return res, errs.get()
}

func (r *receiver) run(size int, w *window, warmed, fenced, delivered *atomic.Int64, lat *stats.Histogram, counter *atomic.Int64) error {
	buf := make([]byte, 0, size)
	for {
		op, msg, err := r.c.Read(buf)
		if err != nil {
			return err
		}
		buf = msg
		if op != ws.OpBinary || len(msg) != size {
			return fmt.Errorf("got opcode %d with %d bytes, want a binary message of %d", op, len(msg), size)
		}
		seq := binary.BigEndian.Uint64(msg)
		switch seq {
		case warmupSeq:
			if !r.warmed.Swap(true) {
				warmed.Add(1)
			}
			continue
		case fenceSeq:
			fenced.Add(1)
			continue
		}
		if want := r.next.Load(); seq != want {
			return fmt.Errorf("got message %d, want %d", seq, want)
		}
		lat.Record(time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(msg[8:])))))
		// Counted before the window hears of it: the sender reads the
		// count as soon as the window says the last message is in.
		delivered.Add(1)
		if counter != nil {
			counter.Add(1)
		}
		r.next.Store(seq + 1)
		w.delivered(seq)
	}
}
