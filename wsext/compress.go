package wsext

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
)

// deflateResponse is the only permessage-deflate agreement wsext makes: no
// context takeover either way, so no connection keeps a compressor or an
// inflater (hundreds of KiB each) between messages.
const deflateResponse = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// negotiateDeflate picks the first permessage-deflate offer in the client's
// Sec-WebSocket-Extensions header that wsext can honour (RFC 7692 section
// 5) and returns the answer to it. An offer asking for a server window
// under 2^15 is declined, since the compressor always uses a 32 KiB window;
// so is one with unknown or repeated parameters. An accepted
// server_max_window_bits=15 is answered, as section 7.1.2.1 requires.
func negotiateDeflate(header string) (string, bool) {
	for offer := range strings.SplitSeq(header, ",") {
		params := strings.Split(offer, ";")
		if strings.TrimSpace(params[0]) != "permessage-deflate" {
			continue
		}
		if ok, window := deflateOfferOK(params[1:]); ok {
			if window {
				return deflateResponse + "; server_max_window_bits=15", true
			}
			return deflateResponse, true
		}
	}
	return "", false
}

func deflateOfferOK(params []string) (ok, serverWindow bool) {
	seen := map[string]bool{}
	for _, p := range params {
		name, value, hasValue := strings.Cut(strings.TrimSpace(p), "=")
		name = strings.TrimSpace(name)
		value = strings.Trim(strings.TrimSpace(value), `"`)
		if seen[name] {
			return false, false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasValue {
				return false, false
			}
		case "server_max_window_bits":
			if n, err := strconv.Atoi(value); err != nil || n != 15 || value != "15" {
				return false, false
			}
			serverWindow = true
		case "client_max_window_bits":
			if hasValue {
				if n, err := strconv.Atoi(value); err != nil || n < 8 || n > 15 {
					return false, false
				}
			}
		default:
			return false, false
		}
	}
	return true, serverWindow
}

// deflateTail ends every compressed message on the wire after its last
// block is flushed; the sender strips it and the receiver puts it back.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// messageReader feeds a compressed payload and its tail to the inflater as
// an io.ByteReader, so that flate reads no further and adds no buffering.
type messageReader struct {
	b    []byte
	tail int
}

func (r *messageReader) ReadByte() (byte, error) {
	if len(r.b) > 0 {
		c := r.b[0]
		r.b = r.b[1:]
		return c, nil
	}
	if r.tail < len(deflateTail) {
		r.tail++
		return deflateTail[r.tail-1], nil
	}
	return 0, io.EOF
}

func (r *messageReader) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	r.b = r.b[n:]
	if n < len(p) && r.tail < len(deflateTail) {
		k := copy(p[n:], deflateTail[r.tail:])
		r.tail += k
		n += k
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

type inflater struct {
	r  messageReader
	fr io.ReadCloser
}

var inflaters = sync.Pool{New: func() any {
	f := new(inflater)
	f.fr = flate.NewReader(&f.r)
	return f
}}

// inflate decompresses one message into a pooled buffer, stopping as soon
// as the output passes limit: a small message that would inflate to
// gigabytes costs at most limit bytes.
func inflate(compressed []byte, limit int64) ([]byte, error) {
	f := inflaters.Get().(*inflater)
	defer inflaters.Put(f)
	f.r = messageReader{b: compressed}
	if err := f.fr.(flate.Resetter).Reset(&f.r, nil); err != nil {
		return nil, err
	}
	out := getBuf(min(4*len(compressed)+64, int(limit)+1))
	for {
		if len(out) == cap(out) {
			if int64(len(out)) > limit {
				return out, &closeError{CloseMessageTooBig, "message too big after inflating"}
			}
			grown := getBuf(min(2*cap(out), int(limit)+1))
			grown = append(grown, out...)
			putBuf(out)
			out = grown
		}
		n, err := f.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if int64(len(out)) > limit {
			return out, &closeError{CloseMessageTooBig, "message too big after inflating"}
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return out, &closeError{CloseInvalidPayload, "bad compressed data"}
		}
	}
}

// deflaters are pooled per level: a flate.Writer is large to make.
var deflaters [10]sync.Pool

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// deflate compresses data as one message; ok is false when compression
// would not make it smaller.
func deflate(data []byte, level int) (out []byte, ok bool) {
	sw := &sliceWriter{b: getBuf(len(data) + 64)}
	fw, _ := deflaters[level].Get().(*flate.Writer)
	if fw == nil {
		fw, _ = flate.NewWriter(sw, level)
	} else {
		fw.Reset(sw)
	}
	fw.Write(data)
	fw.Flush()
	deflaters[level].Put(fw)
	b := sw.b
	if !bytes.HasSuffix(b, deflateTail) || len(b)-len(deflateTail) >= len(data) {
		putBuf(b)
		return nil, false
	}
	return b[:len(b)-len(deflateTail)], true
}

func (c *Conn) writeCompressed(op byte, data []byte) error {
	z, ok := deflate(data, c.srv.opts.CompressionLevel)
	if !ok {
		var hdr [10]byte
		return c.send(appendHeader(hdr[:0], op, true, false, len(data)), data, frameData)
	}
	var hdr [10]byte
	err := c.send(appendHeader(hdr[:0], op, true, true, len(z)), z, frameData)
	putBuf(z)
	return err
}
