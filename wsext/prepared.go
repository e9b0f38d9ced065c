package wsext

import "sync"

// PreparedMessage is a message encoded once for many connections, the
// broadcast primitive: writing it to a connection costs a queue append or
// one system call, not another encoding. It owns a copy of its data, so
// the caller may reuse its buffer at once (as OnMessage's data is reused
// when OnMessage returns), even while Each tasks still write the message.
type PreparedMessage struct {
	op    byte
	frame []byte // header and payload, uncompressed
	data  []byte // the payload: a slice of frame

	// Compressed frames, made on first use, per compression level: servers
	// with different levels may share a message.
	zmu sync.Mutex
	zfr []compressedFrame
}

type compressedFrame struct {
	level int
	frame []byte // header and compressed payload; nil when compression does not pay
}

// NewPreparedMessage encodes data as one message, text when isText. It
// copies data.
func NewPreparedMessage(data []byte, isText bool) *PreparedMessage {
	op := byte(opBinary)
	if isText {
		op = opText
	}
	pm := &PreparedMessage{op: op}
	pm.frame = appendHeader(getBuf(len(data)+10), op, true, false, len(data))
	hl := len(pm.frame)
	pm.frame = append(pm.frame, data...)
	pm.data = pm.frame[hl:]
	return pm
}

// Release returns the message's buffers; it must not be written after.
func (pm *PreparedMessage) Release() {
	pm.zmu.Lock()
	defer pm.zmu.Unlock()
	putBuf(pm.frame)
	for _, z := range pm.zfr {
		putBuf(z.frame)
	}
	pm.frame, pm.data, pm.zfr = nil, nil, nil
}

// compressed returns the message compressed at level, or false when
// compression would not make it smaller.
func (pm *PreparedMessage) compressed(level int) ([]byte, bool) {
	pm.zmu.Lock()
	defer pm.zmu.Unlock()
	for _, z := range pm.zfr {
		if z.level == level {
			return z.frame, z.frame != nil
		}
	}
	var fr []byte
	if z, ok := deflate(pm.data, level); ok {
		fr = appendHeader(getBuf(len(z)+10), pm.op, true, true, len(z))
		fr = append(fr, z...)
		putBuf(z)
	}
	pm.zfr = append(pm.zfr, compressedFrame{level, fr})
	return fr, fr != nil
}

// WritePrepared writes a prepared message; see Write. Unlike Write it does
// not make a system call in the caller: the frame is appended to the
// connection's queue and the poller's workers send it, coalescing every
// frame queued meanwhile into one write. That makes a broadcast cost a
// queue append per recipient.
func (c *Conn) WritePrepared(pm *PreparedMessage) error {
	frame := pm.frame
	if frame == nil {
		return ErrReleased
	}
	if c.rs.deflate && len(pm.data) >= c.srv.opts.CompressionThreshold {
		if fr, ok := pm.compressed(c.srv.opts.CompressionLevel); ok {
			frame = fr
		}
	}
	return c.sendQueued(frame)
}
