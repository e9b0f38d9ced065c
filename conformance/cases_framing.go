package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
)

const (
	catFraming       = "1 Framing"
	catPing          = "2 Pings/Pongs"
	catReservedBits  = "3 Reserved Bits"
	catOpcodes       = "4 Opcodes"
	helloWorld       = "Hello, world!"
	reservedPayload  = "reserved opcode payload"
	nonContPayload   = "non-continuation payload"
	pingPayloadShort = "ping payload"
)

// framingCases are Autobahn's 1.1.x (text) and 1.2.x (binary) payload
// sizes around the 7-, 16- and 64-bit length encodings, plus 1.3.x for
// malformed frame headers.
func framingCases() []Case {
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536}
	var cs []Case
	for i, op := range []byte{opText, opBinary} {
		fill := byte('*')
		if op == opBinary {
			fill = 0xFE
		}
		for j, n := range append(sizes, 65536) {
			chop := 0
			desc := fmt.Sprintf("Send %s message with payload length %d; expect its echo.", opcodeName(op), n)
			if j == len(sizes) {
				chop = 997
				desc = fmt.Sprintf("Send %s message with payload length %d in chops of 997 octets; expect its echo.", opcodeName(op), n)
			}
			payload := bytes.Repeat([]byte{fill}, n)
			f := frame{fin: true, opcode: op, payload: payload}
			cs = append(cs, Case{
				ID:          fmt.Sprintf("1.%d.%d", i+1, j+1),
				Category:    catFraming,
				Description: desc,
				Run: script(closes(),
					func(c *conn) error {
						if chop > 0 {
							c.writeChopped(encode(f), chop)
						} else {
							c.send(oneChop, f)
						}
						return nil
					},
					expectMessage(op, payload)),
			})
		}
	}
	huge := []byte{0x81, 0x80 | 127}
	huge = binary.BigEndian.AppendUint64(huge, 1<<40)
	huge = append(huge, 1, 2, 3, 4)
	msb := []byte{0x82, 0x80 | 127}
	msb = binary.BigEndian.AppendUint64(msb, 1<<63|5)
	msb = append(msb, 1, 2, 3, 4)
	nonMinimal16 := append([]byte{0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4}, 'a'^1, 'b'^2, 'c'^3, 'd'^4, 'e'^1)
	nonMinimal64 := binary.BigEndian.AppendUint64([]byte{0x82, 0x80 | 127}, 200)
	nonMinimal64 = append(nonMinimal64, 1, 2, 3, 4)
	nonMinimal64 = append(nonMinimal64, make([]byte, 200)...)
	hugeCont := binary.BigEndian.AppendUint64([]byte{0x80, 0x80 | 127}, 1<<63-1)
	hugeCont = append(hugeCont, 1, 2, 3, 4)
	cs = append(cs,
		Case{
			ID: "1.3.1", Category: catFraming,
			Description: "Send an unmasked text frame (clients MUST mask, RFC 6455 5.1); expect the connection to fail with 1002.",
			Run:         script(fails(protocolError), send(oneChop, textFrame(helloWorld).unmasked())),
		},
		Case{
			ID: "1.3.2", Category: catFraming,
			Description: "Send a frame header whose 64-bit length has its most significant bit set (RFC 6455 5.2); expect 1002.",
			Run:         script(fails(protocolError, closeMessageTooBig), sendRaw(msb)),
		},
		Case{
			ID: "1.3.4", Category: catFraming,
			Description: "Send a binary frame whose 5-octet length is encoded in 16 bits (the minimal encoding is a MUST, RFC 6455 5.2); expect 1002.",
			Run:         script(fails(protocolError), sendRaw(nonMinimal16)),
		},
		Case{
			ID: "1.3.5", Category: catFraming,
			Description: "Send a binary frame whose 200-octet length is encoded in 64 bits (not minimal, RFC 6455 5.2); expect 1002.",
			Run:         script(fails(protocolError), sendRaw(nonMinimal64)),
		},
		Case{
			ID: "1.3.6", Category: catFraming,
			Description: "Send a text fragment, then a continuation header announcing 2^63-1 bytes; expect 1009 at once (the size check must not overflow).",
			Run: script(fails(tooBig, closeProtocolError),
				send(oneChop, frame{fin: false, opcode: opText, payload: []byte("start")}),
				sendRaw(hugeCont)),
		},
		Case{
			ID: "1.3.3", Category: catFraming,
			Description: "Send a text frame header announcing 2^40 bytes; expect the server to refuse it at once with 1009 without waiting for the payload.",
			Run:         script(fails(tooBig, closeProtocolError), sendRaw(huge)),
		},
	)
	return cs
}

// unmasked marks f to be sent without a masking key.
func (f frame) unmasked() frame {
	f.bare = true
	return f
}

func pingCases() []Case {
	bin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	b125 := bytes.Repeat([]byte{0xFE}, 125)
	b126 := bytes.Repeat([]byte{0xFE}, 126)
	unsolicited := []byte("unsolicited pong payload")
	cs := []Case{
		{ID: "2.1", Description: "Send ping without payload; expect pong without payload.",
			Run: script(closes(), send(oneChop, pingFrame(nil)), expectPong(nil))},
		{ID: "2.2", Description: "Send ping with a small text payload; expect pong with the same payload.",
			Run: script(closes(), send(oneChop, pingFrame([]byte(helloWorld))), expectPong([]byte(helloWorld)))},
		{ID: "2.3", Description: "Send ping with a small binary (non UTF-8) payload; expect pong with the same payload.",
			Run: script(closes(), send(oneChop, pingFrame(bin)), expectPong(bin))},
		{ID: "2.4", Description: "Send ping with a binary payload of 125 octets; expect pong with the same payload.",
			Run: script(closes(), send(oneChop, pingFrame(b125)), expectPong(b125))},
		{ID: "2.5", Description: "Send ping with a binary payload of 126 octets (control frames carry at most 125); expect 1002.",
			Run: script(fails(protocolError), send(oneChop, pingFrame(b126)))},
		{ID: "2.6", Description: "Send ping with a binary payload of 125 octets, octet-wise; expect pong with the same payload.",
			Run: script(closes(), send(octetWise, pingFrame(b125)), expectPong(b125))},
		{ID: "2.7", Description: "Send unsolicited pong without payload; expect nothing in return, then a clean close.",
			Run: script(closes(), send(oneChop, pongFrame(nil)))},
		{ID: "2.8", Description: "Send unsolicited pong with payload; expect nothing in return, then a clean close.",
			Run: script(closes(), send(oneChop, pongFrame(unsolicited)))},
		{ID: "2.9", Description: "Send unsolicited pong with payload, then ping with payload; expect the pong for the ping only.",
			Run: script(closes(), send(oneChop, pongFrame(unsolicited), pingFrame([]byte(pingPayloadShort))), expectPong([]byte(pingPayloadShort)))},
		{ID: "2.10", Description: "Send 10 pings with distinct payloads in one chop; expect 10 pongs in order (answering only the last is NON-STRICT, RFC 6455 5.5.3).",
			Run: tenPings(oneChop)},
		{ID: "2.11", Description: "Send 10 pings with distinct payloads, octet-wise; expect 10 pongs in order (answering only the last is NON-STRICT).",
			Run: tenPings(octetWise)},
	}
	for i := range cs {
		cs[i].Category = catPing
	}
	return cs
}

// tenPings is Autobahn 2.10/2.11: a server may skip pongs for pings it has
// not answered yet, but must answer the last one.
func tenPings(mode writeMode) func(context.Context, *Target) Result {
	return func(ctx context.Context, t *Target) Result {
		c, err := open(ctx, t, "")
		if err != nil {
			return failedErr(err)
		}
		defer c.close()
		var frames []frame
		for i := range 10 {
			frames = append(frames, pingFrame(fmt.Appendf(nil, "payload-%d", i)))
		}
		c.send(mode, frames...)
		next := 0
		for next < 10 {
			e, err := c.nextUseful()
			if err != nil {
				return failed("after %d of 10 pongs: %v", next, err)
			}
			if e.kind != evPong {
				return failed("after %d of 10 pongs, got %v", next, e)
			}
			i := slicesIndex(frames[next:], e.payload)
			if i < 0 {
				return failed("pong (%s) answers none of the pings not yet answered", preview(e.payload))
			}
			if i > 0 {
				c.notes = append(c.notes, fmt.Sprintf("skipped pongs for %d pings", i))
			}
			next += i + 1
		}
		return c.play(closes())
	}
}

func slicesIndex(frames []frame, payload []byte) int {
	for i, f := range frames {
		if bytes.Equal(f.payload, payload) {
			return i
		}
	}
	return -1
}

// reservedBitsCases are Autobahn 3.1-3.7: any RSV bit without a negotiated
// extension must fail the connection, and frames after the bad one must
// not be processed.
func reservedBitsCases() []Case {
	hello := textFrame(helloWorld)
	cs := []Case{
		{ID: "3.1", Description: "Send small text message with RSV = 1; expect 1002.",
			Run: script(fails(protocolError), send(oneChop, hello.withRSV(1)))},
		{ID: "3.2", Description: "Send small text message, then one with RSV = 2, then ping, in one chop; expect the echo, then 1002 and no pong.",
			Run: script(fails(protocolError), send(oneChop, hello, hello.withRSV(2), pingFrame(nil)), expectText(helloWorld))},
		{ID: "3.3", Description: "Send small text message, then one with RSV = 3, then ping, frame-wise; expect the echo, then 1002 and no pong.",
			Run: script(fails(protocolError), send(frameWise, hello, hello.withRSV(3), pingFrame(nil)), expectText(helloWorld))},
		{ID: "3.4", Description: "Send small text message, then one with RSV = 4, then ping, octet-wise; expect the echo, then 1002 and no pong.",
			Run: script(fails(protocolError), send(octetWise, hello, hello.withRSV(4), pingFrame(nil)), expectText(helloWorld))},
		{ID: "3.5", Description: "Send small binary message with RSV = 5; expect 1002.",
			Run: script(fails(protocolError), send(oneChop, binaryFrame(bytes.Repeat([]byte{0xFF}, 8)).withRSV(5)))},
		{ID: "3.6", Description: "Send ping with RSV = 6; expect 1002 and no pong.",
			Run: script(fails(protocolError), send(oneChop, pingFrame([]byte(helloWorld)).withRSV(6)))},
		{ID: "3.7", Description: "Send close with RSV = 7; expect 1002.",
			Run: script(fails(protocolError), send(oneChop, closeFrame(closeNormal, "").withRSV(7)))},
	}
	for i := range cs {
		cs[i].Category = catReservedBits
	}
	return cs
}

// opcodeCases are Autobahn 4.1.x (reserved data opcodes 3-7) and 4.2.x
// (reserved control opcodes 11-15).
func opcodeCases() []Case {
	var cs []Case
	for g, base := range []byte{3, 11} {
		kind := "non-control"
		if base == 11 {
			kind = "control"
		}
		for i := range byte(5) {
			op := base + i
			bad := frame{fin: true, opcode: op}
			if i != 0 && i != 2 {
				bad.payload = []byte(reservedPayload)
			}
			id := fmt.Sprintf("4.%d.%d", g+1, i+1)
			var run func(context.Context, *Target) Result
			var desc string
			switch i {
			case 0, 1:
				desc = fmt.Sprintf("Send frame with reserved %s opcode %d%s; expect 1002.", kind, op, withPayload(bad))
				run = script(fails(protocolError), send(oneChop, bad))
			default:
				mode := []writeMode{oneChop, oneChop, oneChop, frameWise, octetWise}[i]
				desc = fmt.Sprintf("Send small text message, then frame with reserved %s opcode %d%s, then ping, %s; expect the echo, then 1002 and no pong.", kind, op, withPayload(bad), mode)
				run = script(fails(protocolError), send(mode, textFrame(helloWorld), bad, pingFrame(nil)), expectText(helloWorld))
			}
			cs = append(cs, Case{ID: id, Category: catOpcodes, Description: desc, Run: run})
		}
	}
	return cs
}

func withPayload(f frame) string {
	if len(f.payload) == 0 {
		return ""
	}
	return " and non-empty payload"
}
