package conformance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// RSV bits as they sit in the frame's rsv field: RSV1 is the
// permessage-deflate "compressed" bit.
const (
	rsv1 = 4
	rsv2 = 2
)

// Close status codes the suite sends or expects (RFC 6455 section 7.4.1).
const (
	closeNormal          = 1000
	closeProtocolError   = 1002
	closeInvalidPayload  = 1007
	closeMessageTooBig   = 1009
	maxControlPayloadLen = 125
)

var (
	// errShortFrame means the input ended inside a frame.
	errShortFrame = errors.New("truncated frame")
	// errFrameTooLarge means a frame announced more payload than the reader
	// accepts.
	errFrameTooLarge = errors.New("frame payload over the read limit")
	// errBadLength means a 64-bit payload length with its most significant
	// bit set, which RFC 6455 section 5.2 forbids.
	errBadLength = errors.New("64-bit payload length with the most significant bit set")
)

// frame is one WebSocket frame, well-formed or deliberately not: the suite
// builds frames no conforming client would send.
type frame struct {
	fin     bool
	rsv     byte // the three RSV bits, RSV1 = 4, RSV2 = 2, RSV3 = 1
	opcode  byte
	masked  bool
	mask    [4]byte
	payload []byte
	// bare makes encode send the frame without a masking key, which a
	// server must treat as a protocol error (RFC 6455 section 5.1).
	bare bool
}

func (f frame) String() string {
	s := fmt.Sprintf("%s fin=%t", opcodeName(f.opcode), f.fin)
	if f.rsv != 0 {
		s += fmt.Sprintf(" rsv=%d", f.rsv)
	}
	if f.masked {
		s += " masked"
	}
	return s + fmt.Sprintf(" len=%d", len(f.payload))
}

func opcodeName(op byte) string {
	switch op {
	case opContinuation:
		return "continuation"
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return fmt.Sprintf("opcode-%d", op)
}

func isControl(op byte) bool { return op&0x8 != 0 }

// appendFrame appends f's wire form to dst, masking the payload with f.mask
// when f.masked. The payload length always uses the shortest encoding.
func appendFrame(dst []byte, f frame) []byte {
	b0 := f.opcode & 0x0F
	b0 |= (f.rsv & 0x7) << 4
	if f.fin {
		b0 |= 0x80
	}
	dst = append(dst, b0)
	var b1 byte
	if f.masked {
		b1 = 0x80
	}
	n := len(f.payload)
	switch {
	case n <= 125:
		dst = append(dst, b1|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !f.masked {
		return append(dst, f.payload...)
	}
	dst = append(dst, f.mask[:]...)
	start := len(dst)
	dst = append(dst, f.payload...)
	maskBytes(f.mask, dst[start:])
	return dst
}

// maskBytes XORs b with the masking key (RFC 6455 section 5.3); it is its
// own inverse.
func maskBytes(key [4]byte, b []byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// encode returns the wire form of frames as a client sends them: every
// frame masked with a fresh random key unless it was built unmasked on
// purpose (bare).
func encode(frames ...frame) []byte {
	var b []byte
	for _, f := range frames {
		if !f.masked && !f.bare {
			f.masked = true
			binary.LittleEndian.PutUint32(f.mask[:], rand.Uint32())
		}
		b = appendFrame(b, f)
	}
	return b
}

// readFrame reads one frame from r. It rejects payloads over limit bytes
// before reading them, so a hostile length cannot make it allocate; the
// payload is unmasked when the frame carries a key.
func readFrame(r io.Reader, limit int64) (frame, error) {
	var f frame
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return f, err
	}
	f.fin = hdr[0]&0x80 != 0
	f.rsv = (hdr[0] >> 4) & 0x7
	f.opcode = hdr[0] & 0x0F
	f.masked = hdr[1]&0x80 != 0
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return f, noEOF(err)
		}
		n = uint64(binary.BigEndian.Uint16(hdr[:2]))
	case 127:
		if _, err := io.ReadFull(r, hdr[:8]); err != nil {
			return f, noEOF(err)
		}
		n = binary.BigEndian.Uint64(hdr[:8])
		if n>>63 != 0 {
			return f, errBadLength
		}
	}
	if f.masked {
		if _, err := io.ReadFull(r, f.mask[:]); err != nil {
			return f, noEOF(err)
		}
	}
	if limit >= 0 && n > uint64(limit) {
		return f, fmt.Errorf("%w: %d > %d", errFrameTooLarge, n, limit)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, noEOF(err)
	}
	if f.masked {
		maskBytes(f.mask, f.payload)
	}
	return f, nil
}

// noEOF turns an end of input inside a frame into errShortFrame: only a
// clean end between frames is io.EOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errShortFrame
	}
	return err
}

// closePayload builds a close frame body: the code in network byte order,
// then the reason.
func closePayload(code int, reason string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(code))
	return append(b, reason...)
}

// Frame constructors for the case tables. All are FIN frames unless named
// otherwise.

func textFrame(s string) frame   { return frame{fin: true, opcode: opText, payload: []byte(s)} }
func binaryFrame(b []byte) frame { return frame{fin: true, opcode: opBinary, payload: b} }
func pingFrame(b []byte) frame   { return frame{fin: true, opcode: opPing, payload: b} }
func pongFrame(b []byte) frame   { return frame{fin: true, opcode: opPong, payload: b} }
func closeFrame(code int, reason string) frame {
	return frame{fin: true, opcode: opClose, payload: closePayload(code, reason)}
}

// fragment is a frame of a fragmented message: op is opText or opBinary for
// the first and opContinuation for the rest.
func fragment(op byte, fin bool, b []byte) frame { return frame{fin: fin, opcode: op, payload: b} }

func (f frame) withRSV(rsv byte) frame {
	f.rsv = rsv
	return f
}
