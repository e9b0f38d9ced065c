package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A step is one action or expectation of a scripted case; an error fails
// the case.
type step func(c *conn) error

// An ending judges how the connection ends once the steps are done.
type ending func(c *conn) Result

// writeMode is how a step hands its frames to TCP, after Autobahn's
// "one chop", "frame-wise" and "octet-wise" variants.
type writeMode int

const (
	oneChop   writeMode = iota // all frames in one write
	frameWise                  // one write per frame
	octetWise                  // one write per byte
)

func (m writeMode) String() string {
	return [...]string{"in one chop", "frame-wise", "octet-wise"}[m]
}

// send writes frames in mode.
func send(mode writeMode, frames ...frame) step {
	return func(c *conn) error {
		c.send(mode, frames...)
		return nil
	}
}

func (c *conn) send(mode writeMode, frames ...frame) {
	switch mode {
	case oneChop:
		c.write(encode(frames...))
	case frameWise:
		for _, f := range frames {
			c.write(encode(f))
		}
	case octetWise:
		c.writeChopped(encode(frames...), 1)
	}
}

// sendRaw writes bytes exactly as given, for frames the encoder will not
// build.
func sendRaw(b []byte) step {
	return func(c *conn) error {
		c.write(b)
		return nil
	}
}

func pause(d time.Duration) step {
	return func(c *conn) error {
		time.Sleep(d)
		return nil
	}
}

// expectMessage waits for a message of type op with payload.
func expectMessage(op byte, payload []byte) step {
	return func(c *conn) error { return c.expectMessage(op, payload) }
}

func expectText(s string) step { return expectMessage(opText, []byte(s)) }

func expectPong(payload []byte) step {
	return func(c *conn) error { return c.expectPong(payload) }
}

// nextUseful returns the next event that is not a server ping (next has
// answered those already).
func (c *conn) nextUseful() (event, error) {
	for {
		e, err := c.next()
		if err != nil || e.kind != evPing {
			return e, err
		}
	}
}

func (c *conn) expectMessage(op byte, payload []byte) error {
	e, err := c.nextUseful()
	want := fmt.Sprintf("echo of the %s message of %d bytes", opcodeName(op), len(payload))
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", want, err)
	}
	if e.kind != evMessage {
		return c.unexpected(want, e)
	}
	if e.opcode != op || !bytes.Equal(e.payload, payload) {
		return fmt.Errorf("want %s (%s), got %v", want, preview(payload), e)
	}
	c.matched++
	return nil
}

func (c *conn) expectPong(payload []byte) error {
	e, err := c.nextUseful()
	want := fmt.Sprintf("pong (%s)", preview(payload))
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", want, err)
	}
	if e.kind != evPong || !bytes.Equal(e.payload, payload) {
		return c.unexpected(want, e)
	}
	c.matched++
	return nil
}

// unexpected describes e arriving when want was due, adding the write error
// that may explain an early end.
func (c *conn) unexpected(want string, e event) error {
	msg := fmt.Sprintf("want %s, got %v", want, e)
	if e.kind == evEOF && c.writeErr != nil {
		msg += fmt.Sprintf(" (our writes failed: %v)", c.writeErr)
	}
	return errors.New(msg)
}

// script builds a case body: open a connection, run the steps, judge the
// ending. NON-STRICT notes made by steps downgrade an OK ending.
func script(end ending, steps ...step) func(context.Context, *Target) Result {
	return scriptExt("", end, steps...)
}

// scriptExt is script with extensions offered in the handshake.
func scriptExt(extensions string, end ending, steps ...step) func(context.Context, *Target) Result {
	return func(ctx context.Context, t *Target) Result {
		c, err := open(ctx, t, extensions)
		if err != nil {
			return failedErr(err)
		}
		defer c.close()
		return c.play(end, steps...)
	}
}

func (c *conn) play(end ending, steps ...step) Result {
	for _, s := range steps {
		if err := s(c); err != nil {
			return failedErr(err)
		}
	}
	res := end(c)
	if res.Verdict != Failed && c.matched > 0 {
		res.Reason = fmt.Sprintf("%d expected replies; %s", c.matched, res.Reason)
	}
	if res.Verdict == OK && len(c.notes) > 0 {
		res.Verdict = NonStrict
		res.Reason = strings.Join(c.notes, "; ") + "; " + res.Reason
	}
	return res
}

// closes is the ending of a case the server must survive: we start a normal
// close handshake and the server must answer it and then drop TCP.
func closes() ending {
	return func(c *conn) Result {
		c.send(oneChop, closeFrame(closeNormal, ""))
		return c.awaitCloseReply(closeNormal)
	}
}

// awaitCloseReply judges the server's side of a close handshake we started
// with code sent (0 for a close frame without a code): it must answer with
// a close frame and no more data, echoing the code or sending 1000 or no
// code, and then close the TCP connection.
func (c *conn) awaitCloseReply(sent int) Result {
	for {
		e, err := c.nextUseful()
		if err != nil {
			return failed("after our close %s: %v", codeText(sent), err)
		}
		switch e.kind {
		case evClose:
			if err := c.awaitEOF(); err != nil {
				return failedErr(err)
			}
			switch e.code {
			case 0:
				return ok("server answered our close %s with an empty close and closed TCP", codeText(sent))
			case sent, closeNormal:
				return ok("server echoed our close %s with %d and closed TCP", codeText(sent), e.code)
			}
			return nonStrict("server answered our close %s with a different code %d, then closed TCP", codeText(sent), e.code)
		case evEOF:
			return failed("server closed TCP without answering our close %s (%v)", codeText(sent), e.err)
		default:
			return failed("after our close %s, want the server's close, got %v", codeText(sent), e)
		}
	}
}

func codeText(code int) string {
	if code == 0 {
		return "(no code)"
	}
	return fmt.Sprint(code)
}

// awaitEOF waits for the server to close TCP once both close frames are
// exchanged (RFC 6455 section 5.5.1: it then MUST close the connection).
func (c *conn) awaitEOF() error {
	e, err := c.nextUseful()
	switch {
	case errors.Is(err, errTimeout):
		return fmt.Errorf("server kept TCP open for %s after the close handshake", c.timeout)
	case err != nil:
		return fmt.Errorf("after the close handshake: %w", err)
	case e.kind != evEOF:
		return fmt.Errorf("server sent %v after its close frame", e)
	}
	return nil
}

// fails is the ending of a case in which the server must fail the
// connection: a close frame with one of the codes in want is OK; a close
// with a code in lenient, a close without a code or a bare TCP close is
// NON-STRICT (RFC 6455 section 7.1.7 lets a failing endpoint omit the close
// frame); anything else, or silence, is FAILED.
func fails(want []int, lenient ...int) ending {
	return func(c *conn) Result { return c.expectFailure(want, lenient) }
}

// Expected close codes for the kinds of failure.
var (
	protocolError  = []int{closeProtocolError}
	invalidPayload = []int{closeInvalidPayload}
	tooBig         = []int{closeMessageTooBig}
)

func (c *conn) expectFailure(want, lenient []int) Result {
	e, err := c.nextUseful()
	wantText := fmt.Sprintf("close %s", joinCodes(want))
	if err != nil {
		return failed("want the server to fail the connection (%s): %v", wantText, err)
	}
	switch e.kind {
	case evEOF:
		return nonStrict("server dropped TCP without a close frame (want %s)", wantText)
	case evClose:
		// Answer the close so the server can finish its handshake; it may
		// already have dropped the connection.
		if e.code == 0 {
			c.send(oneChop, frame{fin: true, opcode: opClose})
		} else {
			c.send(oneChop, closeFrame(e.code, ""))
		}
		if err := c.awaitEOF(); err != nil {
			return failedErr(err)
		}
		switch {
		case slices.Contains(want, e.code):
			return ok("server failed the connection with close %d", e.code)
		case slices.Contains(lenient, e.code):
			return nonStrict("server failed the connection with close %d (%s is preferred)", e.code, wantText)
		case e.code == 0:
			return nonStrict("server failed the connection with a close frame without code (want %s)", wantText)
		}
		return failed("server closed with code %d, want %s", e.code, wantText)
	}
	return failed("want the server to fail the connection (%s), got %v", wantText, e)
}

func joinCodes(codes []int) string {
	s := make([]string, len(codes))
	for i, c := range codes {
		s[i] = fmt.Sprint(c)
	}
	return strings.Join(s, " or ")
}
