package wsext

import "sync"

// PreparedMessage is a message encoded once for many connections, the
// broadcast primitive: writing it to a connection costs a queue append or
// one system call, not another encoding.
type PreparedMessage struct {
	op    byte
	data  []byte
	frame []byte // header and payload, uncompressed

	zonce sync.Once
	zok   bool
	zbuf  []byte
	zfr   []byte // header and payload, compressed
	level int
}

// NewPreparedMessage encodes data as one message, text when isText. The
// caller may reuse data only after Release.
func NewPreparedMessage(data []byte, isText bool) *PreparedMessage {
	op := byte(opBinary)
	if isText {
		op = opText
	}
	pm := &PreparedMessage{op: op, data: data}
	pm.frame = appendHeader(getBuf(len(data)+10), op, true, false, len(data))
	pm.frame = append(pm.frame, data...)
	return pm
}

// Release returns the message's buffers; it must not be written after.
func (pm *PreparedMessage) Release() {
	putBuf(pm.frame)
	putBuf(pm.zbuf)
	pm.frame, pm.zbuf, pm.zfr = nil, nil, nil
}

func (pm *PreparedMessage) compressed(level int) ([]byte, bool) {
	pm.zonce.Do(func() {
		z, ok := deflate(pm.data, level)
		if !ok {
			return
		}
		pm.zok = true
		pm.zbuf = z
		pm.zfr = appendHeader(getBuf(len(z)+10), pm.op, true, true, len(z))
		pm.zfr = append(pm.zfr, z...)
	})
	return pm.zfr, pm.zok
}

// WritePrepared writes a prepared message; see Write. Unlike Write it does
// not make a system call in the caller: the frame is appended to the
// connection's queue and the poller's workers send it, coalescing every
// frame queued meanwhile into one write. That makes a broadcast cost a
// queue append per recipient.
func (c *Conn) WritePrepared(pm *PreparedMessage) error {
	frame := pm.frame
	if c.deflate && len(pm.data) >= c.srv.opts.CompressionThreshold {
		if fr, ok := pm.compressed(c.srv.opts.CompressionLevel); ok {
			frame = fr
		}
	}
	return c.sendQueued(frame)
}
