package conformance

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

const catClose = "7 Close Handling"

// validCodes are Autobahn 7.7.x: codes a peer may send, which the server
// must accept and answer. The IANA-registered 1012-1014 follow (7.7.14-16).
var validCodes = []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999}

// registeredCodes were registered with IANA after RFC 6455; older Autobahn
// versions counted them as invalid, so failing on them is NON-STRICT.
var registeredCodes = []int{1012, 1013, 1014}

// invalidCodes are Autobahn 7.9.x plus 1015 and the codes above 4999: none
// may appear in a close frame (RFC 6455 section 7.4), so each must fail the
// connection with 1002.
var invalidCodes = []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}

func closeCases() []Case {
	var cs []Case
	add := func(id, desc string, run caseFunc) {
		cs = append(cs, Case{ID: id, Category: catClose, Description: desc, Run: run})
	}
	hello := "Hello World!"
	add("7.1.1", "Send a text message, then a close frame; expect the echo, then the close handshake.",
		script(closedBy(closeNormal), send(oneChop, textFrame(hello), closeFrame(closeNormal, "")), expectText(hello)))
	add("7.1.2", "Send two close frames; expect one close answer and the TCP close.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, ""), closeFrame(closeNormal, ""))))
	add("7.1.3", "Send a close frame, then a ping; expect the close answer and no pong.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, ""), pingFrame([]byte(hello)))))
	add("7.1.4", "Send a close frame, then a text message; expect the close answer and no echo.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, ""), textFrame(hello))))
	add("7.1.5", "Send the first fragment of a text message, a close frame, then the last fragment; expect the close answer and no echo.",
		script(closedBy(closeNormal), send(oneChop, fragment(opText, false, []byte("fragment1")), closeFrame(closeNormal, ""), fragment(opContinuation, true, []byte("fragment2")))))
	add("7.1.6", "Send a large text message, a close frame and a ping back to back; the echo may or may not come (Autobahn: informational), the close answer must, and no pong.",
		largeThenClose)

	add("7.3.1", "Send a close frame with an empty payload; expect a close answer (empty or 1000) and the TCP close.",
		script(closedBy(0), send(oneChop, frame{fin: true, opcode: opClose})))
	add("7.3.2", "Send a close frame with a 1-octet payload; expect 1002.",
		script(fails(protocolError), send(oneChop, frame{fin: true, opcode: opClose, payload: []byte{0x03}})))
	add("7.3.3", "Send a close frame with code 1000 and no reason; expect the close echoed.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, ""))))
	add("7.3.4", "Send a close frame with code 1000 and a reason; expect the close echoed.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, hello))))
	add("7.3.5", "Send a close frame with code 1000 and a 123-octet reason (125-octet payload); expect the close echoed.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, strings.Repeat("*", 123)))))
	add("7.3.6", "Send a close frame with code 1000 and a 124-octet reason (126-octet payload); expect 1002.",
		script(fails(protocolError), send(oneChop, closeFrame(closeNormal, strings.Repeat("*", 124)))))

	add("7.5.1", "Send a close frame whose reason is invalid UTF-8; expect 1007 (or 1002).",
		script(fails([]int{closeInvalidPayload, closeProtocolError}), send(oneChop, closeFrame(closeNormal, kosme+"\xed\xa0\x80edited"))))
	add("7.5.2", "Send a close frame whose reason is valid multi-byte UTF-8; expect the close echoed.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, kosme))))
	add("7.5.3", "Send a close frame whose reason ends inside a code point; expect 1007 (or 1002).",
		script(fails([]int{closeInvalidPayload, closeProtocolError}), send(oneChop, closeFrame(closeNormal, kosme[:len(kosme)-1]))))

	for i, code := range validCodes {
		add(fmt.Sprintf("7.7.%d", i+1), fmt.Sprintf("Send a close frame with valid code %d; expect the close echoed (with %d or 1000).", code, code),
			script(closedBy(code), send(oneChop, closeFrame(code, ""))))
	}
	for i, code := range registeredCodes {
		add(fmt.Sprintf("7.7.%d", len(validCodes)+i+1), fmt.Sprintf("Send a close frame with IANA-registered code %d; expect the close echoed (failing with 1002 is NON-STRICT).", code),
			registeredCode(code))
	}
	for i, code := range invalidCodes {
		add(fmt.Sprintf("7.9.%d", i+1), fmt.Sprintf("Send a close frame with invalid code %d; expect 1002.", code),
			script(fails(protocolError), send(oneChop, closeFrame(code, ""))))
	}
	add("7.11.1", "Send a close frame with code 1000 and a 123-octet reason of 41 3-byte characters; expect the close echoed.",
		script(closedBy(closeNormal), send(oneChop, closeFrame(closeNormal, strings.Repeat("\xe2\x82\xac", 41)))))
	add("7.11.2", "Send the first fragment of a text message and a ping; expect the pong; then send a close frame with a reason; expect the close answer and no echo.",
		script(closedBy(closeNormal), send(oneChop, fragment(opText, false, []byte("fragment1")), pingFrame([]byte("p"))), expectPong([]byte("p")),
			send(oneChop, closeFrame(closeNormal, "bye"))))
	return cs
}

// closedBy is the ending of a case that already sent a close frame with
// code (0 for none): the server must answer it and close TCP, and send
// nothing else.
func closedBy(code int) ending {
	return func(c *conn) Result { return c.awaitCloseReply(code) }
}

// registeredCode judges 7.7.14-16: echo is OK, failing with 1002 is
// NON-STRICT.
func registeredCode(code int) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		c, err := open(ctx, t, "")
		if err != nil {
			return failedErr(err)
		}
		defer c.close()
		c.send(oneChop, closeFrame(code, ""))
		e, err := c.nextUseful()
		if err != nil {
			return failed("after our close %d: %v", code, err)
		}
		if e.kind == evClose && e.code == closeProtocolError && code != closeProtocolError {
			c.send(oneChop, closeFrame(closeProtocolError, ""))
			if err := c.awaitEOF(); err != nil {
				return failedErr(err)
			}
			return nonStrict("server failed the connection with 1002 on code %d, registered with IANA after RFC 6455", code)
		}
		if e.kind != evClose {
			return failed("after our close %d, want the server's close, got %v", code, e)
		}
		if err := c.awaitEOF(); err != nil {
			return failedErr(err)
		}
		if e.code == 0 || e.code == code || e.code == closeNormal {
			return ok("server echoed our close %d with %s and closed TCP", code, codeText(e.code))
		}
		return nonStrict("server answered our close %d with %d", code, e.code)
	}
}

// largeThenClose is Autobahn 7.1.6: whether the echo of a message sent just
// before the close arrives depends on the implementation; the close
// handshake must complete, and the ping after the close must go unanswered.
func largeThenClose(ctx context.Context, t *Target) Result {
	c, err := open(ctx, t, "")
	if err != nil {
		return failedErr(err)
	}
	defer c.close()
	n := min(t.maxMessage(), 256<<10)
	msg := bytes.Repeat([]byte("BAsd7&jh23"), int(n)/10)
	c.send(oneChop, frame{fin: true, opcode: opText, payload: msg}, closeFrame(closeNormal, ""), pingFrame([]byte("Hello World!")))
	e, err := c.nextUseful()
	if err != nil {
		return failed("after a large message and our close: %v", err)
	}
	echoed := "without the echo"
	if e.kind == evMessage {
		if e.opcode != opText || !bytes.Equal(e.payload, msg) {
			return failed("want the echo of the %d-byte text message or the close answer, got %v", len(msg), e)
		}
		echoed = "after the echo"
	} else {
		c.pushBack(e)
	}
	res := c.awaitCloseReply(closeNormal)
	if res.Verdict != Failed {
		res.Reason = echoed + ": " + res.Reason
	}
	return res
}
