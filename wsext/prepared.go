package wsext

import "sync"

// PreparedMessage is a message encoded once for many connections, the
// broadcast primitive: writing it to a connection queues a reference to
// one shared frame, not a copy, and the connection's loop sends it with
// whatever else is queued in one system call. It owns a copy of its data,
// so the caller may reuse its buffer at once (as OnMessage's data is
// reused when OnMessage returns), even while Each tasks still write the
// message.
type PreparedMessage struct {
	op    byte
	frame *sharedFrame // header and payload, uncompressed
	data  []byte       // the payload: a slice of frame.b

	// Compressed frames, made on first use, per compression level: servers
	// with different levels may share a message.
	zmu sync.Mutex
	zfr []compressedFrame
}

type compressedFrame struct {
	level int
	frame *sharedFrame // nil when compression does not pay
}

// NewPreparedMessage encodes data as one message, text when isText. It
// copies data.
func NewPreparedMessage(data []byte, isText bool) *PreparedMessage {
	op := byte(opBinary)
	if isText {
		op = opText
	}
	b := appendHeader(getBuf(len(data)+10), op, true, false, len(data))
	hl := len(b)
	b = append(b, data...)
	return &PreparedMessage{op: op, frame: newSharedFrame(b), data: b[hl:]}
}

// Release gives up the caller's hold on the message's buffers: they return
// to their pool once every connection it was written to has sent it. The
// message must not be written after.
func (pm *PreparedMessage) Release() {
	pm.zmu.Lock()
	defer pm.zmu.Unlock()
	if pm.frame == nil {
		return
	}
	pm.frame.release()
	for _, z := range pm.zfr {
		if z.frame != nil {
			z.frame.release()
		}
	}
	pm.frame, pm.data, pm.zfr = nil, nil, nil
}

// compressed returns the message compressed at level, or nil when
// compression would not make it smaller.
func (pm *PreparedMessage) compressed(level int) *sharedFrame {
	pm.zmu.Lock()
	defer pm.zmu.Unlock()
	for _, z := range pm.zfr {
		if z.level == level {
			return z.frame
		}
	}
	var fr *sharedFrame
	if pm.frame != nil {
		if z, ok := deflate(pm.data, level); ok {
			b := appendHeader(getBuf(len(z)+10), pm.op, true, true, len(z))
			fr = newSharedFrame(append(b, z...))
			putBuf(z)
		}
	}
	pm.zfr = append(pm.zfr, compressedFrame{level, fr})
	return fr
}

// WritePrepared writes a prepared message; see Write. Unlike Write it does
// not make a system call in the caller: a reference to the frame is queued
// and the connection's loop sends it, coalescing every frame queued
// meanwhile into one writev. That makes a broadcast cost a queue append
// per recipient.
func (c *Conn) WritePrepared(pm *PreparedMessage) error {
	frame := pm.frame
	if frame == nil {
		return ErrReleased
	}
	if c.rs.deflate && len(pm.data) >= c.srv.opts.CompressionThreshold {
		if fr := pm.compressed(c.srv.opts.CompressionLevel); fr != nil {
			frame = fr
		}
	}
	return c.sendShared(frame)
}
