package conformance

import (
	"context"
	"fmt"
	"time"
)

const catFragmentation = "5 Fragmentation"

// fragmentationCases are Autobahn 5.1-5.20 plus a few more fragment
// sequences (5.21-5.25).
func fragmentationCases() []Case {
	f1, f2 := []byte("fragment1"), []byte("fragment2")
	both := "fragment1fragment2"
	ping := []byte(pingPayloadShort)
	var cs []Case
	add := func(desc string, run caseFunc) {
		cs = append(cs, Case{ID: fmt.Sprintf("5.%d", len(cs)+1), Category: catFragmentation, Description: desc, Run: run})
	}

	add("Send ping in 2 fragments; expect 1002 (control frames must not be fragmented).",
		script(fails(protocolError), send(oneChop, fragment(opPing, false, f1), fragment(opContinuation, true, f2))))
	add("Send pong in 2 fragments; expect 1002.",
		script(fails(protocolError), send(oneChop, fragment(opPong, false, f1), fragment(opContinuation, true, f2))))
	for _, mode := range []writeMode{oneChop, frameWise, octetWise} {
		add(fmt.Sprintf("Send text message in 2 fragments, %s; expect its echo.", mode),
			script(closes(), send(mode, fragment(opText, false, f1), fragment(opContinuation, true, f2)), expectText(both)))
	}
	for _, mode := range []writeMode{oneChop, frameWise, octetWise} {
		add(fmt.Sprintf("Send text message in 2 fragments with a ping in between, %s; expect the pong, then the echo.", mode),
			script(closes(), send(mode, fragment(opText, false, f1), pingFrame(ping), fragment(opContinuation, true, f2)),
				expectPong(ping), expectText(both)))
	}
	for _, fin := range []bool{true, false} {
		for _, mode := range []writeMode{oneChop, frameWise, octetWise} {
			add(fmt.Sprintf("Send continuation frame with FIN = %t when there is nothing to continue, then a text message, %s; expect 1002 and no echo.", fin, mode),
				script(fails(protocolError), send(mode, fragment(opContinuation, fin, []byte(nonContPayload)), textFrame(helloWorld))))
		}
	}
	add("Send text message in 2 fragments, then a continuation frame with FIN = false where there is nothing to continue, then a text message, in one chop; expect the first echo, then 1002.",
		script(fails(protocolError), send(oneChop,
			fragment(opText, false, f1), fragment(opContinuation, true, f2),
			fragment(opContinuation, false, []byte("fragment3")), textFrame("fragment4")),
			expectText(both)))
	add("Send, twice: continuation (FIN = false), text (FIN = false), continuation (FIN = true); expect 1002 at once.",
		script(fails(protocolError), send(oneChop, twice(
			fragment(opContinuation, false, f1), fragment(opText, false, f2), fragment(opContinuation, true, []byte("fragment3")))...)))
	add("Send, twice: continuation (FIN = true), text (FIN = false), continuation (FIN = true); expect 1002 at once.",
		script(fails(protocolError), send(oneChop, twice(
			fragment(opContinuation, true, f1), fragment(opText, false, f2), fragment(opContinuation, true, []byte("fragment3")))...)))
	add("Send text message in 2 fragments where the second also has opcode text instead of continuation; expect 1002.",
		script(fails(protocolError), send(oneChop, fragment(opText, false, f1), fragment(opText, true, f2))))
	for _, mode := range []writeMode{oneChop, frameWise} {
		add(fmt.Sprintf("Send text message in 5 fragments with pauses, a ping after the 2nd and after the 4th, %s; expect each pong while the message is still open, then the echo.", mode),
			slowFragments(mode))
	}

	// Beyond Autobahn.
	add("Send close frame with FIN = false; expect 1002.",
		script(fails(protocolError), send(oneChop, fragment(opClose, false, closePayload(closeNormal, "")))))
	add("Send binary message in 2 fragments where the second has opcode binary instead of continuation; expect 1002.",
		script(fails(protocolError), send(oneChop, fragment(opBinary, false, f1), fragment(opBinary, true, f2))))
	add("Send text message as a first fragment, then a binary message, in one chop; expect 1002 (a new message may not start before the last ends).",
		script(fails(protocolError), send(oneChop, fragment(opText, false, f1), binaryFrame(f2))))
	want := make([]byte, 100)
	var frags []frame
	var pongs []step
	for i := range want {
		want[i] = byte(i * 7)
		op := byte(opContinuation)
		if i == 0 {
			op = opBinary
		}
		last := i == len(want)-1
		frags = append(frags, fragment(op, last, want[i:i+1]))
		if last {
			break
		}
		frags = append(frags, fragment(opContinuation, false, nil))
		if i%10 == 9 {
			p := fmt.Appendf(nil, "ping-%d", i/10)
			frags = append(frags, pingFrame(p))
			pongs = append(pongs, expectPong(p))
		}
	}
	add("Send binary message in 100 fragments of 1 octet with empty fragments and 9 pings in between; expect the pongs and the echo.",
		script(closes(), append(append([]step{send(oneChop, frags...)}, pongs...), expectMessage(opBinary, want))...))
	add("Send text message whose last fragment is an empty continuation frame; expect its echo.",
		script(closes(), send(oneChop, fragment(opText, false, f1), fragment(opContinuation, false, f2), fragment(opContinuation, true, nil)), expectText(both)))
	return cs
}

// caseFunc is the type of Case.Run.
type caseFunc = func(context.Context, *Target) Result

func twice(frames ...frame) []frame { return append(frames, frames...) }

// slowFragments is Autobahn 5.19/5.20, with the 1 s pauses scaled down:
// the pongs must come while the fragmented message is still incomplete.
func slowFragments(mode writeMode) caseFunc {
	var frags [5][]byte
	var whole []byte
	for i := range frags {
		frags[i] = fmt.Appendf(nil, "fragment%d", i+1)
		whole = append(whole, frags[i]...)
	}
	p1, p2 := []byte("pongme 1!"), []byte("pongme 2!")
	const d = 100 * time.Millisecond
	return script(closes(),
		send(mode, fragment(opText, false, frags[0])), pause(d),
		send(mode, fragment(opContinuation, false, frags[1])), pause(d),
		send(mode, pingFrame(p1)), expectPong(p1),
		send(mode, fragment(opContinuation, false, frags[2])), pause(d),
		send(mode, fragment(opContinuation, false, frags[3])), pause(d),
		send(mode, pingFrame(p2)), expectPong(p2),
		send(mode, fragment(opContinuation, true, frags[4])),
		expectText(string(whole)),
	)
}
