package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
)

// The relay protocol. Every frame is a 4-byte length, then the body of
// that many bytes: an op byte and its operands. Integers are big-endian
// and named by their width in bits (id32, offset64); lenN is the length, on
// N bits, of a later variable-length operand; the last operand of a body
// takes the rest of it.
//
// Plain pub/sub (wsext.Engine):
//
//	'S' channel                          subscribe, worker to master
//	'U' channel                          unsubscribe, worker to master
//	'P' flags len16 channel data         publish (worker to master) and
//	                                     message (master to worker)
//
// History (wsext.HistoryEngine):
//
//	'H' id32 origin64 flags len16 channel data
//	    publish with history, worker to master
//	'K' id32 offset64 epoch
//	    its ack, master to the publisher: the message's position
//	'M' offset64 origin64 flags len16(epoch) len16(channel) epoch channel data
//	    positioned message, master to every subscribing worker; origin
//	    is the publisher's in the publisher's copy, 0 in the others
//	'Q' id32 offset64 len16 epoch channel
//	    history request, worker to master: the messages after
//	    (offset, epoch)
//	'R' id32 top64 rflags count32 epoch
//	    history answer, master to worker: the channel's top (offset and
//	    epoch), rflags bit 0 set when recovered; count 'E' frames follow
//	    at once, nothing else between them
//	'E' id32 offset64 flags data
//	    one message of the answer, oldest first
//
// Presence (wsext.PresenceEngine):
//
//	'J' len16(channel) len16(client) channel client info   join, worker to master
//	'L' len16 channel client                               leave, worker to master
//	'W' id32 channel                                       presence request, worker to master
//	'V' id32 vflags entries                                presence answer, master to worker
//
// A presence answer is one or more 'V' frames in a row, each with about
// presenceChunk bytes of entries at most; vflags bit 0 says that another
// follows. entries is a run of len16(client) len16(info)
// client info.
//
// flags bit 0 marks a text message. Every other bit of flags, rflags and
// vflags is zero. The id of an answer is the id of its request: the worker
// chooses it and the master only echoes it.
//
// An answer of many messages (a history of 1000 × 256 KiB, say) is one
// frame per message rather than one frame, so that no frame is larger than
// a message needs; the master queues the answer's frames in one piece, so
// that a worker gets all of them or none (see Hub).
//
// Both sides speak the same 'P' frames, so the master relays a plain
// publish by copying its bytes.
const (
	opSubscribe   = 'S'
	opUnsubscribe = 'U'
	opPublish     = 'P'

	opPublishHistory  = 'H'
	opAck             = 'K'
	opPositioned      = 'M'
	opHistoryRequest  = 'Q'
	opHistoryAnswer   = 'R'
	opHistoryEntry    = 'E'
	opJoin            = 'J'
	opLeave           = 'L'
	opPresenceRequest = 'W'
	opPresenceAnswer  = 'V'

	flagText      = 1
	flagRecovered = 1 // rflags
	flagMore      = 1 // vflags

	lenSize = 4
	// MaxMessage is the largest message the relay carries, and
	// MaxChannel the longest channel name, in bytes. Epochs, presence
	// client ids and presence info are bounded by MaxChannel too.
	MaxMessage = 64 << 20
	MaxChannel = 1<<16 - 1

	// The fixed part of each body, op byte included.
	publishHeader         = 1 + 1 + 2
	publishHistoryHeader  = 1 + 4 + 8 + 1 + 2
	ackHeader             = 1 + 4 + 8
	positionedHeader      = 1 + 8 + 8 + 1 + 2 + 2
	historyRequestHeader  = 1 + 4 + 8 + 2
	historyAnswerHeader   = 1 + 4 + 8 + 1 + 4
	historyEntryHeader    = 1 + 4 + 8 + 1
	joinHeader            = 1 + 2 + 2
	leaveHeader           = 1 + 2
	presenceRequestHeader = 1 + 4
	presenceAnswerHeader  = 1 + 4 + 1
	presenceEntryHeader   = 2 + 2

	// presenceChunk is about the most bytes of entries in one 'V' frame.
	presenceChunk = 64 << 10

	// maxBody bounds a frame so that a corrupt length cannot make a reader
	// allocate gigabytes. The largest frame is a positioned message.
	maxBody = positionedHeader + 2*MaxChannel + MaxMessage
	// readStep is how much of a body is read (and allocated) at a time.
	readStep = 1 << 20
)

// errFrame is wrapped by the errors of a malformed frame.
var errFrame = errors.New("cluster: malformed relay frame")

// ErrTooLarge is returned for a message over MaxMessage, or a channel
// name, epoch, client id or presence info over MaxChannel.
var ErrTooLarge = errors.New("cluster: message or channel name too large for the relay")

// frame is one decoded frame. Its byte slices alias the read buffer; the
// fields an op does not have are zero.
type frame struct {
	op        byte
	text      bool
	recovered bool   // 'R'
	more      bool   // 'V'
	id        uint32 // 'H', 'K', 'Q', 'R', 'E', 'W', 'V'
	offset    uint64 // 'K', 'M', 'Q', 'E'; the top for 'R'
	origin    uint64 // 'H', 'M'
	count     uint32 // 'R'
	channel   []byte
	epoch     []byte // 'K', 'M', 'Q', 'R'
	client    []byte // 'J', 'L'
	data      []byte // the message; info for 'J'; the entries for 'V'
}

func appendHeader(b []byte, body int) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(body))
}

func textFlags(isText bool) byte {
	if isText {
		return flagText
	}
	return 0
}

func appendLen16(b []byte, s string) []byte {
	return binary.BigEndian.AppendUint16(b, uint16(len(s)))
}

// appendSub appends a subscribe or unsubscribe frame.
func appendSub(b []byte, op byte, channel string) []byte {
	b = appendHeader(b, 1+len(channel))
	b = append(b, op)
	return append(b, channel...)
}

// appendPublish appends a publish frame.
func appendPublish(b []byte, channel string, data []byte, isText bool) []byte {
	b = appendHeader(b, publishHeader+len(channel)+len(data))
	b = append(b, opPublish, textFlags(isText))
	b = appendLen16(b, channel)
	b = append(b, channel...)
	return append(b, data...)
}

// publishHistorySize is the size of a publish-with-history frame.
func publishHistorySize(channel string, data []byte) int {
	return lenSize + publishHistoryHeader + len(channel) + len(data)
}

// appendPublishHistory appends a publish-with-history frame.
func appendPublishHistory(b []byte, id uint32, origin uint64, channel string, data []byte, isText bool) []byte {
	b = appendHeader(b, publishHistorySize(channel, data)-lenSize)
	b = append(b, opPublishHistory)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, origin)
	b = append(b, textFlags(isText))
	b = appendLen16(b, channel)
	b = append(b, channel...)
	return append(b, data...)
}

// appendAck appends the ack of a publish with history.
func appendAck(b []byte, id uint32, offset uint64, epoch string) []byte {
	b = appendHeader(b, ackHeader+len(epoch))
	b = append(b, opAck)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, offset)
	return append(b, epoch...)
}

// positionedSize is the size of a positioned message frame.
func positionedSize(epoch, channel string, data []byte) int {
	return lenSize + positionedHeader + len(epoch) + len(channel) + len(data)
}

// appendPositioned appends a positioned message frame.
func appendPositioned(b []byte, offset, origin uint64, epoch, channel string, data []byte, isText bool) []byte {
	b = appendHeader(b, positionedSize(epoch, channel, data)-lenSize)
	b = append(b, opPositioned)
	b = binary.BigEndian.AppendUint64(b, offset)
	b = binary.BigEndian.AppendUint64(b, origin)
	b = append(b, textFlags(isText))
	b = appendLen16(b, epoch)
	b = appendLen16(b, channel)
	b = append(b, epoch...)
	b = append(b, channel...)
	return append(b, data...)
}

// appendHistoryRequest appends a history request.
func appendHistoryRequest(b []byte, id uint32, offset uint64, epoch, channel string) []byte {
	b = appendHeader(b, historyRequestHeader+len(epoch)+len(channel))
	b = append(b, opHistoryRequest)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, offset)
	b = appendLen16(b, epoch)
	b = append(b, epoch...)
	return append(b, channel...)
}

// appendHistoryAnswer appends the first frame of a history answer; count
// history entries must follow it.
func appendHistoryAnswer(b []byte, id uint32, top uint64, epoch string, recovered bool, count uint32) []byte {
	b = appendHeader(b, historyAnswerHeader+len(epoch))
	b = append(b, opHistoryAnswer)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, top)
	var rflags byte
	if recovered {
		rflags = flagRecovered
	}
	b = append(b, rflags)
	b = binary.BigEndian.AppendUint32(b, count)
	return append(b, epoch...)
}

// historyEntrySize is the size of a history entry frame.
func historyEntrySize(data []byte) int {
	return lenSize + historyEntryHeader + len(data)
}

// appendHistoryEntry appends one message of a history answer.
func appendHistoryEntry(b []byte, id uint32, offset uint64, data []byte, isText bool) []byte {
	b = appendHeader(b, historyEntrySize(data)-lenSize)
	b = append(b, opHistoryEntry)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, offset)
	b = append(b, textFlags(isText))
	return append(b, data...)
}

// appendJoin appends a join frame.
func appendJoin(b []byte, channel, client, info string) []byte {
	b = appendHeader(b, joinHeader+len(channel)+len(client)+len(info))
	b = append(b, opJoin)
	b = appendLen16(b, channel)
	b = appendLen16(b, client)
	b = append(b, channel...)
	b = append(b, client...)
	return append(b, info...)
}

// appendLeave appends a leave frame.
func appendLeave(b []byte, channel, client string) []byte {
	b = appendHeader(b, leaveHeader+len(channel)+len(client))
	b = append(b, opLeave)
	b = appendLen16(b, channel)
	b = append(b, channel...)
	return append(b, client...)
}

// appendPresenceRequest appends a presence request.
func appendPresenceRequest(b []byte, id uint32, channel string) []byte {
	b = appendHeader(b, presenceRequestHeader+len(channel))
	b = append(b, opPresenceRequest)
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, channel...)
}

// appendPresenceAnswer appends the 'V' frames of a presence answer with
// entries: a new frame begins once one holds presenceChunk bytes of
// entries.
func appendPresenceAnswer(b []byte, id uint32, entries iter.Seq2[string, string]) []byte {
	var chunk []byte
	for client, info := range entries {
		if len(chunk) >= presenceChunk {
			b = appendPresenceFrame(b, id, true, chunk)
			chunk = chunk[:0]
		}
		chunk = appendPresenceEntry(chunk, client, info)
	}
	return appendPresenceFrame(b, id, false, chunk)
}

// appendPresenceFrame appends one 'V' frame of entries made by
// appendPresenceEntry.
func appendPresenceFrame(b []byte, id uint32, more bool, entries []byte) []byte {
	b = appendHeader(b, presenceAnswerHeader+len(entries))
	b = append(b, opPresenceAnswer)
	b = binary.BigEndian.AppendUint32(b, id)
	var vflags byte
	if more {
		vflags = flagMore
	}
	b = append(b, vflags)
	return append(b, entries...)
}

func appendPresenceEntry(b []byte, client, info string) []byte {
	b = appendLen16(b, client)
	b = appendLen16(b, info)
	b = append(b, client...)
	return append(b, info...)
}

// presenceEntries iterates over the entries of a 'V' frame's data, which
// parseBody has checked.
func presenceEntries(data []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for len(data) > 0 {
			c := cursor{b: data}
			nc, ni := c.len16(), c.len16()
			client, info := c.bytes(nc), c.bytes(ni)
			if c.bad || !yield(client, info) {
				return
			}
			data = c.b
		}
	}
}

func checkSizes(channel string, data []byte) error {
	if len(channel) > MaxChannel || len(data) > MaxMessage {
		return fmt.Errorf("%w: channel %d bytes, message %d bytes", ErrTooLarge, len(channel), len(data))
	}
	return nil
}

// checkNames checks the lengths of the names a frame carries with a len16
// or in place of one: channel names, epochs, client ids and info.
func checkNames(names ...string) error {
	for _, s := range names {
		if len(s) > MaxChannel {
			return fmt.Errorf("%w: a name or info of %d bytes", ErrTooLarge, len(s))
		}
	}
	return nil
}

// cursor reads a body's operands in order; bad is set, and the reads
// return zeros, once one would go past the end.
type cursor struct {
	b   []byte
	bad bool
}

func (c *cursor) take(n int) []byte {
	if c.bad || n > len(c.b) {
		c.bad = true
		return nil
	}
	v := c.b[:n:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) u8() byte {
	if v := c.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (c *cursor) len16() int {
	if v := c.take(2); v != nil {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (c *cursor) u32() uint32 {
	if v := c.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (c *cursor) u64() uint64 {
	if v := c.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (c *cursor) bytes(n int) []byte { return c.take(n) }

// rest takes what is left, which must be at most max bytes.
func (c *cursor) rest(max int) []byte {
	if len(c.b) > max {
		c.bad = true
		return nil
	}
	return c.take(len(c.b))
}

// parseBody decodes a frame's body.
func parseBody(body []byte) (frame, error) {
	if len(body) == 0 {
		return frame{}, fmt.Errorf("%w: empty", errFrame)
	}
	f := frame{op: body[0]}
	c := cursor{b: body[1:]}
	var flags, mask byte // flags and the bits it may have
	switch f.op {
	case opSubscribe, opUnsubscribe:
		f.channel = c.rest(MaxChannel)
	case opPublish:
		flags, mask = c.u8(), flagText
		f.channel = c.bytes(c.len16())
		f.data = c.rest(MaxMessage)
	case opPublishHistory:
		f.id, f.origin = c.u32(), c.u64()
		flags, mask = c.u8(), flagText
		f.channel = c.bytes(c.len16())
		f.data = c.rest(MaxMessage)
	case opAck:
		f.id, f.offset = c.u32(), c.u64()
		f.epoch = c.rest(MaxChannel)
	case opPositioned:
		f.offset, f.origin = c.u64(), c.u64()
		flags, mask = c.u8(), flagText
		ne, nc := c.len16(), c.len16()
		f.epoch, f.channel = c.bytes(ne), c.bytes(nc)
		f.data = c.rest(MaxMessage)
	case opHistoryRequest:
		f.id, f.offset = c.u32(), c.u64()
		f.epoch = c.bytes(c.len16())
		f.channel = c.rest(MaxChannel)
	case opHistoryAnswer:
		f.id, f.offset = c.u32(), c.u64()
		flags, mask = c.u8(), flagRecovered
		f.count = c.u32()
		f.epoch = c.rest(MaxChannel)
	case opHistoryEntry:
		f.id, f.offset = c.u32(), c.u64()
		flags, mask = c.u8(), flagText
		f.data = c.rest(MaxMessage)
	case opJoin:
		nc, nl := c.len16(), c.len16()
		f.channel, f.client = c.bytes(nc), c.bytes(nl)
		f.data = c.rest(MaxChannel)
	case opLeave:
		f.channel = c.bytes(c.len16())
		f.client = c.rest(MaxChannel)
	case opPresenceRequest:
		f.id = c.u32()
		f.channel = c.rest(MaxChannel)
	case opPresenceAnswer:
		f.id = c.u32()
		flags, mask = c.u8(), flagMore
		f.data = c.rest(maxBody)
		for e := (cursor{b: f.data}); !e.bad && len(e.b) > 0; {
			e.bytes(e.len16() + e.len16())
			c.bad = c.bad || e.bad
		}
	default:
		return frame{}, fmt.Errorf("%w: op %#x", errFrame, f.op)
	}
	if c.bad {
		return frame{}, fmt.Errorf("%w: %q frame of %d bytes does not add up", errFrame, f.op, len(body))
	}
	if flags&^mask != 0 {
		return frame{}, fmt.Errorf("%w: %q frame with flags %#x", errFrame, f.op, flags)
	}
	switch f.op {
	case opPublish, opPublishHistory, opPositioned, opHistoryEntry:
		f.text = flags&flagText != 0
	case opHistoryAnswer:
		f.recovered = flags&flagRecovered != 0
	case opPresenceAnswer:
		f.more = flags&flagMore != 0
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
