package wsext

import (
	"encoding/binary"
	"unicode/utf8"
)

// frameSink receives what a frameReader parses: whole messages and valid
// control frames. Conn is the sink of its own reader (see input.go); the
// fuzz and benchmark tests use others, since the reader knows nothing of
// connections.
type frameSink interface {
	// limit is the message size limit, read when a message starts.
	limit() int64
	// message takes a whole message, inflated and validated; data is only
	// valid during the call.
	message(data []byte, isText bool)
	// ping and pong take a control frame's payload, valid during the call.
	ping(payload []byte)
	pong(payload []byte)
	// close takes a valid close frame: code 0 when it had none. The reader
	// parses nothing after it.
	close(code int, reason []byte)
}

// frameReader is an incremental parser of the client-to-server frames of
// RFC 6455 (and RFC 7692's compressed messages). Bytes arrive in whatever
// pieces the socket hands over; the reader keeps only what a partial frame
// needs, so an idle connection holds no buffer at all. A violation is
// returned as a *closeError carrying the close code to answer with, and
// ends the parsing. One goroutine at a time may use it.
type frameReader struct {
	deflate bool // permessage-deflate was negotiated: RSV1 marks a compressed message

	hdr  [maxHeaderLen]byte // a header split across reads
	hdrN int

	inFrame bool
	op      byte
	fin     bool
	mask    [4]byte
	maskPos int
	remain  int64 // payload bytes still to come in this frame

	msgOp      byte // opText or opBinary while a message is in progress
	compressed bool
	msgLen     int64  // wire bytes of the message so far
	msg        []byte // message assembled across frames or reads (pooled)
	utf8       utf8State
	limit      int64 // max message size, read when the message starts

	ctrl []byte // a control frame payload split across reads

	stopped bool // the stream failed or closed: nothing more is parsed
}

// release returns the reader's buffers.
func (rs *frameReader) release() {
	putBuf(rs.msg)
	rs.msg = nil
	rs.ctrl = nil
}

// stop ends the parsing: what follows is discarded.
func (rs *frameReader) stop() { rs.stopped = true }

// directReadMin is the frame payload size from which a polled connection
// reads straight into the message buffer instead of copying through the
// worker's read buffer.
const directReadMin = 16 << 10

// direct returns where the next read should land when a large data frame
// is in progress, so its bytes are read once into their final place; nil
// means read into the loop's buffer and feed that.
func (rs *frameReader) direct() []byte {
	if !rs.inFrame || rs.stopped || rs.remain < directReadMin || rs.op > opBinary {
		return nil
	}
	if rs.msg == nil {
		rs.msg = getBuf(int(rs.msgLen) + int(rs.remain))
	}
	if free := cap(rs.msg) - len(rs.msg); int64(free) < rs.remain {
		grown := getBuf(len(rs.msg) + int(rs.remain))
		grown = append(grown, rs.msg...)
		putBuf(rs.msg)
		rs.msg = grown
	}
	return rs.msg[len(rs.msg) : len(rs.msg)+int(rs.remain)]
}

// filled accounts for n bytes read into direct's slice.
func (rs *frameReader) filled(n int, sink frameSink) error {
	start := len(rs.msg)
	rs.msg = rs.msg[:start+n]
	chunk := rs.msg[start:]
	rs.maskPos = maskBytes(rs.mask, rs.maskPos, chunk)
	rs.remain -= int64(n)
	rs.msgLen += int64(n)
	if rs.msgOp == opText && !rs.compressed {
		if rs.utf8 = rs.utf8.next(chunk); rs.utf8 == utf8Reject {
			return &closeError{CloseInvalidPayload, "invalid UTF-8 in text message"}
		}
	}
	if rs.remain == 0 {
		rs.inFrame = false
		if rs.fin {
			return rs.deliver(rs.msg, sink)
		}
	}
	return nil
}

// feed parses p, which the reader may modify (unmasking happens in place),
// handing every complete message and control frame to sink.
func (rs *frameReader) feed(p []byte, sink frameSink) error {
	for len(p) > 0 && !rs.stopped {
		if !rs.inFrame {
			var h []byte
			if rs.hdrN == 0 {
				if n := headerLen(p); n > 0 && n <= len(p) {
					h, p = p[:n], p[n:]
				}
			}
			if h == nil {
				need := max(headerLen(rs.hdr[:rs.hdrN]), 2)
				for rs.hdrN < need && len(p) > 0 {
					k := copy(rs.hdr[rs.hdrN:need], p)
					rs.hdrN += k
					p = p[k:]
					need = max(headerLen(rs.hdr[:rs.hdrN]), 2)
				}
				if rs.hdrN < need {
					return nil
				}
				h = rs.hdr[:need]
				rs.hdrN = 0
			}
			if err := rs.beginFrame(h, sink); err != nil {
				return err
			}
			if rs.remain == 0 {
				rs.inFrame = false
				if err := rs.framePayload(nil, true, sink); err != nil {
					return err
				}
			}
			continue
		}
		n := int(min(rs.remain, int64(len(p))))
		chunk := p[:n]
		p = p[n:]
		rs.maskPos = maskBytes(rs.mask, rs.maskPos, chunk)
		rs.remain -= int64(n)
		done := rs.remain == 0
		if done {
			rs.inFrame = false
		}
		if err := rs.framePayload(chunk, done, sink); err != nil {
			return err
		}
	}
	return nil
}

// beginFrame checks a frame header (numbered as in RFC 6455 section 5.2).
func (rs *frameReader) beginFrame(h []byte, sink frameSink) error {
	b0, b1 := h[0], h[1]
	fin, rsv1, op := b0&0x80 != 0, b0&0x40 != 0, b0&0x0f
	// 1. RSV2 and RSV3 have no negotiated meaning; RSV1 only with deflate.
	if b0&0x30 != 0 {
		return protocolError("reserved bits set")
	}
	// 2. Client frames must be masked.
	if b1&0x80 == 0 {
		return protocolError("unmasked client frame")
	}
	// 3. Payload length, 7, 7+16 or 7+64 bits.
	// Section 5.2: "the minimal number of bytes MUST be used to encode
	// the length".
	var length int64
	switch l := b1 & 0x7f; l {
	case 126:
		length = int64(binary.BigEndian.Uint16(h[2:]))
		if length < 126 {
			return protocolError("payload length not in its minimal encoding")
		}
	case 127:
		u := binary.BigEndian.Uint64(h[2:])
		if u>>63 != 0 {
			return protocolError("payload length has its top bit set")
		}
		length = int64(u)
		if length <= 0xffff {
			return protocolError("payload length not in its minimal encoding")
		}
	default:
		length = int64(l)
	}
	copy(rs.mask[:], h[len(h)-4:])
	// 4. Opcode rules.
	switch op {
	case opText, opBinary:
		if rs.msgOp != 0 {
			return protocolError("new message before the previous one ended")
		}
		if rsv1 && !rs.deflate {
			return protocolError("RSV1 set without permessage-deflate")
		}
		rs.msgOp, rs.compressed, rs.msgLen = op, rsv1, 0
		rs.utf8 = utf8Accept
		rs.limit = sink.limit()
	case opContinuation:
		if rs.msgOp == 0 {
			return protocolError("continuation frame without a message")
		}
		if rsv1 {
			return protocolError("RSV1 set on a continuation frame")
		}
	case opClose, opPing, opPong:
		if !fin {
			return protocolError("fragmented control frame")
		}
		if length > maxControlPayload {
			return protocolError("control frame payload over 125 bytes")
		}
		if rsv1 {
			return protocolError("RSV1 set on a control frame")
		}
	default:
		return protocolError("reserved opcode")
	}
	// 5. The size limit, before a byte of the payload is buffered. A
	// compressed message is limited again after inflating; its wire size
	// gets the slack of incompressible data.
	if op <= opBinary {
		limit := rs.limit
		if rs.compressed {
			limit += limit/64 + 1024
		}
		// Subtracting, not adding: length may be as large as 2^63-1.
		if length > limit-rs.msgLen {
			return &closeError{CloseMessageTooBig, "message too big"}
		}
	}
	rs.inFrame, rs.op, rs.fin, rs.remain, rs.maskPos = true, op, fin, length, 0
	return nil
}

// framePayload takes the next unmasked piece of the current frame.
func (rs *frameReader) framePayload(chunk []byte, done bool, sink frameSink) error {
	if rs.op >= opClose {
		payload := chunk
		if !done || len(rs.ctrl) > 0 {
			rs.ctrl = append(rs.ctrl, chunk...)
			if !done {
				return nil
			}
			payload = rs.ctrl
		}
		err := rs.control(rs.op, payload, sink)
		rs.ctrl = rs.ctrl[:0]
		return err
	}
	whole := rs.msgLen == 0 // nothing of this message came before chunk
	rs.msgLen += int64(len(chunk))
	if rs.msgOp == opText && !rs.compressed {
		if rs.utf8 = rs.utf8.next(chunk); rs.utf8 == utf8Reject {
			return &closeError{CloseInvalidPayload, "invalid UTF-8 in text message"}
		}
	}
	// The common case: a whole message in one frame in one read is handed
	// to OnMessage from the read buffer, with no copy.
	if done && rs.fin && whole && len(rs.msg) == 0 {
		return rs.deliver(chunk, sink)
	}
	if len(chunk) > 0 {
		if rs.msg == nil {
			rs.msg = getBuf(len(chunk) + int(rs.remain))
		}
		if len(rs.msg)+len(chunk) > cap(rs.msg) {
			grown := getBuf(len(rs.msg) + len(chunk) + int(rs.remain))
			grown = append(grown, rs.msg...)
			putBuf(rs.msg)
			rs.msg = grown
		}
		rs.msg = append(rs.msg, chunk...)
	}
	if done && rs.fin {
		return rs.deliver(rs.msg, sink)
	}
	return nil
}

// deliver hands a complete message to OnMessage and resets for the next.
func (rs *frameReader) deliver(data []byte, sink frameSink) error {
	isText := rs.msgOp == opText
	var inflated []byte
	if rs.compressed {
		var err error
		inflated, err = inflate(data, rs.limit)
		if err != nil {
			putBuf(inflated)
			return err
		}
		data = inflated
		if isText && !utf8.Valid(data) {
			putBuf(inflated)
			return &closeError{CloseInvalidPayload, "invalid UTF-8 in text message"}
		}
	} else if isText && rs.utf8 != utf8Accept {
		return &closeError{CloseInvalidPayload, "text message ends inside a UTF-8 sequence"}
	}
	sink.message(data, isText)
	putBuf(inflated)
	rs.msgOp, rs.compressed, rs.msgLen = 0, false, 0
	putBuf(rs.msg)
	rs.msg = nil
	return nil
}

// control handles a complete ping, pong or close frame.
func (rs *frameReader) control(op byte, payload []byte, sink frameSink) error {
	switch op {
	case opPing:
		sink.ping(payload)
	case opPong:
		sink.pong(payload)
	case opClose:
		code := 0
		switch {
		case len(payload) == 1:
			return protocolError("close frame with a 1-byte payload")
		case len(payload) >= 2:
			code = int(binary.BigEndian.Uint16(payload))
			if !validReceivedCloseCode(code) {
				return protocolError("invalid close code")
			}
			if !utf8.Valid(payload[2:]) {
				return &closeError{CloseInvalidPayload, "close reason is not UTF-8"}
			}
		}
		rs.stopped = true
		var reason []byte
		if len(payload) > 2 {
			reason = payload[2:]
		}
		sink.close(code, reason)
	}
	return nil
}
