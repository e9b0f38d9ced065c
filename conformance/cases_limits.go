package conformance

import (
	"context"
	"fmt"
	"math/rand/v2"
)

const catLimits = "9 Limits/Performance"

// Sizes of Autobahn's category 9, scaled down so the suite stays fast and
// stays within wsd's default 256 KiB message limit.
const (
	kib            = 1 << 10
	fragmentedSize = 256 * kib // message size of 9.3/9.4, capped by the target's limit
	choppedSize    = 128 * kib // message size of 9.5/9.6, capped likewise
	roundTrips     = 100       // messages per 9.7/9.8 case (Autobahn: 1000)
)

// limitCases are Autobahn 9.1-9.8 scaled to the target's message limit,
// plus 9.9.x: messages one byte over the limit must fail with 1009.
func limitCases() []Case {
	var cs []Case
	add := func(id, desc string, run caseFunc) {
		cs = append(cs, Case{ID: id, Category: catLimits, Description: desc, Run: run})
	}
	for g, op := range []byte{opText, opBinary} {
		name := opcodeName(op)
		sizes := []struct {
			desc string
			n    func(max int64) int64
		}{
			{"64 KiB", func(max int64) int64 { return min(64*kib, max) }},
			{"half the server's limit", func(max int64) int64 { return max / 2 }},
			{"exactly the server's limit", func(max int64) int64 { return max }},
		}
		for i, sz := range sizes {
			add(fmt.Sprintf("9.%d.%d", g+1, i+1), fmt.Sprintf("Send %s message of %s in one frame; expect its echo.", name, sz.desc),
				bigEcho(op, sz.n, 0, 0))
		}
	}
	for g, op := range []byte{opText, opBinary} {
		for i, frag := range []int{64, 256, kib, 4 * kib, 16 * kib, 64 * kib, 256 * kib} {
			add(fmt.Sprintf("9.%d.%d", g+3, i+1), fmt.Sprintf("Send %s message of 256 KiB (or the server's limit) in fragments of %d octets; expect its echo.", opcodeName(op), frag),
				bigEcho(op, func(max int64) int64 { return min(fragmentedSize, max) }, frag, 0))
		}
	}
	for g, op := range []byte{opText, opBinary} {
		for i, chop := range []int{64, 128, 256, 512, kib, 2 * kib} {
			add(fmt.Sprintf("9.%d.%d", g+5, i+1), fmt.Sprintf("Send %s message of 128 KiB in one frame written in chops of %d octets; expect its echo.", opcodeName(op), chop),
				bigEcho(op, func(max int64) int64 { return min(choppedSize, max) }, 0, chop))
		}
	}
	for g, op := range []byte{opText, opBinary} {
		for i, n := range []int{0, 16, 64, 256, kib, 4 * kib} {
			add(fmt.Sprintf("9.%d.%d", g+7, i+1), fmt.Sprintf("Send %d %s messages of %d octets one after another, each after the previous echo; expect every echo.", roundTrips, opcodeName(op), n),
				roundTrip(op, n))
		}
	}
	over := func(max int64) int64 { return max + 1 }
	add("9.9.1", "Send text message one octet over the server's limit in one frame; expect 1009.", tooBigCase(opText, over, 0))
	add("9.9.2", "Send binary message one octet over the server's limit in one frame; expect 1009.", tooBigCase(opBinary, over, 0))
	add("9.9.3", "Send text message one octet over the server's limit in fragments of 64 KiB; expect 1009.", tooBigCase(opText, over, 64*kib))
	add("9.9.4", "Send binary message one octet over the server's limit in fragments of 4 KiB; expect 1009.", tooBigCase(opBinary, over, 4*kib))
	add("9.9.5", "Send binary message of exactly the server's limit in fragments of 4 KiB; expect its echo.",
		bigEcho(opBinary, func(max int64) int64 { return max }, 4*kib, 0))
	return cs
}

// payloadFor returns n octets: printable ASCII for text (so the message is
// valid UTF-8), pseudo-random bytes for binary.
func payloadFor(op byte, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), op})
	r.Read(b)
	if op == opText {
		for i := range b {
			b[i] = ' ' + b[i]%95
		}
	}
	return b
}

// messageFrames splits a message into fragments of at most frag octets
// (frag 0: one frame).
func messageFrames(op byte, payload []byte, frag int) []frame {
	if frag <= 0 || len(payload) <= frag {
		return []frame{{fin: true, opcode: op, payload: payload}}
	}
	var frames []frame
	for len(payload) > 0 {
		n := min(frag, len(payload))
		frames = append(frames, fragment(op, n == len(payload), payload[:n]))
		payload = payload[n:]
		op = opContinuation
	}
	return frames
}

// bigEcho sends one message of size(limit) octets, fragmented by frag or
// written in chops of chop, and expects its echo.
func bigEcho(op byte, size func(int64) int64, frag, chop int) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		n := int(size(t.maxMessage()))
		payload := payloadFor(op, n)
		wire := encode(messageFrames(op, payload, frag)...)
		return script(closes(), func(c *conn) error {
			if chop > 0 {
				c.writeChopped(wire, chop)
			} else {
				c.write(wire)
			}
			return errStep(fmt.Sprintf("%d-octet message", n), c.expectMessage(op, payload))
		})(ctx, t)
	}
}

func roundTrip(op byte, n int) caseFunc {
	return script(closes(), func(c *conn) error {
		for i := range roundTrips {
			payload := payloadFor(op, n)
			if n > 0 {
				payload[0] = byte('0' + i%10)
			}
			c.send(oneChop, frame{fin: true, opcode: op, payload: payload})
			if err := c.expectMessage(op, payload); err != nil {
				return fmt.Errorf("message %d: %w", i+1, err)
			}
		}
		return nil
	})
}

// tooBigCase sends a message of size(limit) octets and expects 1009. The
// server may fail as soon as the length is known, so our writes may fail.
func tooBigCase(op byte, size func(int64) int64, frag int) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		payload := payloadFor(op, int(size(t.maxMessage())))
		return script(fails(tooBig), func(c *conn) error {
			c.write(encode(messageFrames(op, payload, frag)...))
			return nil
		})(ctx, t)
	}
}
