package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The relay protocol. Every frame is a 4-byte big-endian body length, then
// the body: an op byte and its operands.
//
//	'S' channel                          subscribe
//	'U' channel                          unsubscribe
//	'P' flags len16 channel data         publish (worker to master) and
//	                                     message (master to worker)
//
// flags bit 0 marks a text message; the other bits are zero. len16 is the
// channel's length, big-endian. Both sides speak the same frames, so the
// master relays a publish by copying its bytes.
const (
	opSubscribe   = 'S'
	opUnsubscribe = 'U'
	opPublish     = 'P'

	flagText = 1

	lenSize = 4
	// MaxMessage is the largest message the relay carries, and
	// MaxChannel the longest channel name, in bytes.
	MaxMessage = 64 << 20
	MaxChannel = 1<<16 - 1
	// maxBody bounds a frame so that a corrupt length cannot make a reader
	// allocate gigabytes.
	maxBody = 1 + 1 + 2 + MaxChannel + MaxMessage
	// readStep is how much of a body is read (and allocated) at a time.
	readStep = 1 << 20
)

// errFrame is wrapped by the errors of a malformed frame.
var errFrame = errors.New("cluster: malformed relay frame")

// ErrTooLarge is returned for a message or channel name over MaxMessage or
// MaxChannel.
var ErrTooLarge = errors.New("cluster: message or channel name too large for the relay")

// frame is one decoded frame. channel and data alias the read buffer.
type frame struct {
	op      byte
	text    bool
	channel []byte
	data    []byte
}

func appendHeader(b []byte, body int) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(body))
}

// appendSub appends a subscribe or unsubscribe frame.
func appendSub(b []byte, op byte, channel string) []byte {
	b = appendHeader(b, 1+len(channel))
	b = append(b, op)
	return append(b, channel...)
}

// appendPublish appends a publish frame.
func appendPublish(b []byte, channel string, data []byte, isText bool) []byte {
	b = appendHeader(b, 4+len(channel)+len(data))
	var flags byte
	if isText {
		flags = flagText
	}
	b = append(b, opPublish, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(len(channel)))
	b = append(b, channel...)
	return append(b, data...)
}

func checkSizes(channel string, data []byte) error {
	if len(channel) > MaxChannel || len(data) > MaxMessage {
		return fmt.Errorf("%w: channel %d bytes, message %d bytes", ErrTooLarge, len(channel), len(data))
	}
	return nil
}

// parseBody decodes a frame's body.
func parseBody(body []byte) (frame, error) {
	if len(body) == 0 {
		return frame{}, fmt.Errorf("%w: empty", errFrame)
	}
	f := frame{op: body[0]}
	switch f.op {
	case opSubscribe, opUnsubscribe:
		if len(body)-1 > MaxChannel {
			return frame{}, fmt.Errorf("%w: channel name of %d bytes", errFrame, len(body)-1)
		}
		f.channel = body[1:]
	case opPublish:
		if len(body) < 4 {
			return frame{}, fmt.Errorf("%w: publish of %d bytes", errFrame, len(body))
		}
		flags := body[1]
		if flags&^flagText != 0 {
			return frame{}, fmt.Errorf("%w: flags %#x", errFrame, flags)
		}
		f.text = flags&flagText != 0
		n := int(binary.BigEndian.Uint16(body[2:4]))
		if 4+n > len(body) {
			return frame{}, fmt.Errorf("%w: channel of %d bytes in a body of %d", errFrame, n, len(body))
		}
		f.channel = body[4 : 4+n]
		f.data = body[4+n:]
	default:
		return frame{}, fmt.Errorf("%w: op %#x", errFrame, f.op)
	}
	return f, nil
}

// readFrame reads one frame into buf (grown as needed) and returns the
// frame's bytes, length prefix included, with the decoded frame, which
// aliases them. At a clean end of stream it returns io.EOF.
func readFrame(r *bufio.Reader, buf []byte) (raw []byte, f frame, err error) {
	var hdr [lenSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxBody {
		return nil, frame{}, fmt.Errorf("%w: body length %d", errFrame, n)
	}
	// The body is read in steps of at most readStep, so that a length
	// that lies costs only the bytes actually sent.
	size := lenSize + int(n)
	raw = append(buf[:0], hdr[:]...)
	for len(raw) < size {
		step := min(size-len(raw), readStep)
		raw = slices.Grow(raw, step)
		k, err := io.ReadFull(r, raw[len(raw):len(raw)+step])
		raw = raw[:len(raw)+k]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, frame{}, err
		}
	}
	f, err = parseBody(raw[lenSize:])
	return raw, f, err
}
