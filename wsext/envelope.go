package wsext

import (
	"encoding/base64"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Position is a place in a channel's history: the offset of a message
// (offsets grow by one from 1, per channel) and the epoch of the stream it
// belongs to. An epoch changes when the channel's history is lost, so a
// subscriber that comes back with a position of another epoch learns it
// cannot be given exactly what it missed.
type Position struct {
	Offset uint64
	Epoch  string
}

// ErrNoHistory is returned by SubscribeWith asked to recover on a Server
// without history (Options.HistorySize 0).
var ErrNoHistory = errors.New("wsext: this server keeps no channel history")

// newPositioned prepares a message for a subscriber: the message itself,
// or, with envelope, the JSON envelope documented at SubscribeOptions.
func newPositioned(channel string, pos Position, data []byte, isText, envelope bool) *PreparedMessage {
	if !envelope {
		return NewPreparedMessage(data, isText)
	}
	b := getBuf(len(data) + len(pos.Epoch) + 64)
	b = append(b, `{"offset":`...)
	b = strconv.AppendUint(b, pos.Offset, 10)
	b = append(b, `,"epoch":`...)
	b = appendJSONString(b, pos.Epoch)
	if isText {
		b = append(b, `,"data":`...)
		b = appendJSONString(b, string(data))
	} else {
		b = append(b, `,"binary":true,"data":"`...)
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, '"')
	}
	b = append(b, '}')
	pm := NewPreparedMessage(b, true)
	putBuf(b)
	return pm
}

// writePositioned writes one message of a subscription to c: as it is, or
// in the envelope.
func (c *Conn) writePositioned(channel string, pos Position, data []byte, isText, envelope bool) {
	pm := newPositioned(channel, pos, data, isText, envelope)
	c.WritePrepared(pm)
	pm.Release()
}

// writeStatus writes the first message of an envelope subscription, before
// any replayed or live one: where the channel stands and whether the
// missed messages follow.
//
//	{"status":"subscribed","offset":42,"epoch":"5f0c2a9d31e4","recovered":true,"replayed":3}
func (c *Conn) writeStatus(rec Recovery) {
	b := getBuf(128)
	b = append(b, `{"status":"subscribed","offset":`...)
	b = strconv.AppendUint(b, rec.Top.Offset, 10)
	b = append(b, `,"epoch":`...)
	b = appendJSONString(b, rec.Top.Epoch)
	b = append(b, `,"recovered":`...)
	b = strconv.AppendBool(b, rec.Recovered)
	b = append(b, `,"replayed":`...)
	b = strconv.AppendInt(b, int64(rec.Replayed), 10)
	b = append(b, '}')
	c.Write(b, true)
	putBuf(b)
}

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c < utf8.RuneSelf:
			b = append(b, c)
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == '\u2028' || r == '\u2029' {
				// Valid JSON, but not valid JavaScript before ES2019.
				b = append(b, `\u202`...)
				b = append(b, hex[r&0xf])
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		i++
	}
	return append(b, '"')
}
