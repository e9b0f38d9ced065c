package wsext

import (
	"encoding/binary"
	"unicode/utf8"
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

// Close status codes (RFC 6455 section 7.4.1) that wsext sends.
const (
	CloseNormal          = 1000 // CloseNormal is a normal closure.
	CloseGoingAway       = 1001 // CloseGoingAway is sent when the server shuts down.
	CloseProtocolError   = 1002 // CloseProtocolError answers a malformed frame.
	CloseUnsupportedData = 1003 // CloseUnsupportedData answers data of a type that cannot be accepted.
	CloseNoStatus        = 1005 // CloseNoStatus is reported for a close frame with no code; never sent.
	CloseAbnormal        = 1006 // CloseAbnormal is reported for a connection lost without a close frame; never sent.
	CloseInvalidPayload  = 1007 // CloseInvalidPayload answers a text message that is not UTF-8.
	ClosePolicyViolation = 1008 // ClosePolicyViolation is sent to a reader too slow to drain its queue.
	CloseMessageTooBig   = 1009 // CloseMessageTooBig answers a message over the size limit.
	CloseInternalError   = 1011 // CloseInternalError is sent when the server fails unexpectedly.
	CloseServiceRestart  = 1012 // CloseServiceRestart may be sent when a worker is replaced.
	CloseTryAgainLater   = 1013 // CloseTryAgainLater is sent when a message cannot be handled now.
)

const (
	maxControlPayload = 125
	maxHeaderLen      = 14 // 2 + 8 (length) + 4 (mask)
)

// validReceivedCloseCode reports whether a peer may send code in a close
// frame: the RFC's defined codes that are allowed on the wire, the IANA
// registered 1012-1014, and the application ranges 3000-4999.
func validReceivedCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// appendHeader appends an unmasked (server to client) frame header.
func appendHeader(dst []byte, op byte, fin, rsv1 bool, n int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// headerLen returns the length of the frame header that starts b, or 0 when
// b is too short to tell.
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// maskBytes XORs b with the mask key, starting at key offset pos, and returns
// the offset after b. Eight bytes at a time: masking is on the path of every
// incoming byte.
func maskBytes(key [4]byte, pos int, b []byte) int {
	if len(b) >= 16 {
		var k [8]byte
		for i := range k {
			k[i] = key[(pos+i)&3]
		}
		k64 := binary.LittleEndian.Uint64(k[:])
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= key[pos&3]
		pos++
	}
	return pos & 3
}

// closePayload encodes a close frame payload; reason is cut to fit a control
// frame, at a rune boundary so it stays valid UTF-8.
func closePayload(dst []byte, code int, reason string) []byte {
	if code == 0 {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	return append(dst, reason...)
}

// frameSize returns the length, header included, of the unmasked frame
// that b starts with: one of ours, so its header is known to be whole and
// well formed.
func frameSize(b []byte) int {
	switch n := int(b[1] & 0x7f); n {
	case 126:
		return 4 + int(binary.BigEndian.Uint16(b[2:]))
	case 127:
		return 10 + int(binary.BigEndian.Uint64(b[2:]))
	default:
		return 2 + n
	}
}
