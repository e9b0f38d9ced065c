package wsext

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/wsd-server/wsd/internal/memconn"
)

// fuzzMaxMsg is small so that the fuzzer reaches the limit.
const fuzzMaxMsg = 1024

// clientFrame builds a masked client frame whose first byte is b0 (FIN,
// RSV bits and opcode), for seeds no well-behaved client would send.
func clientFrame(b0 byte, payload []byte) []byte {
	key := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	var f []byte
	switch n := len(payload); {
	case n <= 125:
		f = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		f = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		f = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i&3])
	}
	return f
}

func frameSeeds() [][]byte {
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	deflated := []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00} // "Hello", no context takeover
	return [][]byte{
		{},
		clientFrame(0x81, []byte("hello")),
		clientFrame(0x82, bytes.Repeat([]byte{0}, 300)),
		cat(clientFrame(0x01, []byte("hel")), clientFrame(0x89, []byte("p")), clientFrame(0x80, []byte("lo"))),
		clientFrame(0x81, []byte{0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83}),
		clientFrame(0x81, []byte{0xce, 0xba, 0xe1, 0xbd}), // cut inside a character
		clientFrame(0x81, []byte{0xff, 0xfe}),
		cat(clientFrame(0x01, []byte{0xe2, 0x82}), clientFrame(0x80, []byte{0xac})),
		clientFrame(0x82, make([]byte, fuzzMaxMsg+1)),
		{0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4},
		{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, // unmasked
		clientFrame(0x88, []byte{0x03, 0xe8, 'b', 'y', 'e'}),
		clientFrame(0x88, []byte{0x03}),
		clientFrame(0x88, []byte{0x03, 0xed}), // 1005 may not be sent
		clientFrame(0x8a, nil),
		clientFrame(0x09, nil), // fragmented ping
		clientFrame(0xb1, []byte("x")),
		clientFrame(0x83, nil),
		clientFrame(0xc1, deflated),
		cat(clientFrame(0x41, deflated[:3]), clientFrame(0x80, deflated[3:])),
		clientFrame(0xc2, []byte{0xff, 0xff, 0xff}),
	}
}

// FuzzFrameReader feeds arbitrary bytes, after a valid handshake, to a
// server that echoes every message. Its first byte chooses whether the
// handshake offers permessage-deflate. The server must not panic or hang;
// OnMessage must only ever see text that is valid UTF-8 and messages
// within the size limit, also after inflating; and what the server writes
// back must be well-formed server frames, ending with a close frame if
// any.
func FuzzFrameReader(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(byte(0), s)
		f.Add(byte(1), s)
	}
	s := NewServer(Options{GoroutinePerConn: true, Compression: true})
	s.SetMaxMsgSize(fuzzMaxMsg)
	var bad sync.Mutex
	var violation string
	hs := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		s.Upgrade(ctx, Settings{OnMessage: func(ws *Conn, data []byte, isText bool) {
			switch {
			case isText && !utf8.Valid(data):
				bad.Lock()
				violation = "OnMessage got text that is not UTF-8"
				bad.Unlock()
			case len(data) > fuzzMaxMsg:
				bad.Lock()
				violation = "OnMessage got a message over the limit"
				bad.Unlock()
			}
			ws.Write(data, isText)
		}})
	}}
	f.Fuzz(func(t *testing.T, flags byte, frames []byte) {
		ext := ""
		if flags&1 != 0 {
			ext = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"
		}
		input := append([]byte("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+ext+"\r\n"), frames...)
		c := memconn.New(input)
		go hs.ServeConn(c)
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the connection was never closed")
		}
		waitFor(t, "the connection to end", 10*time.Second, func() bool { return s.Count() == 0 })
		bad.Lock()
		v := violation
		violation = ""
		bad.Unlock()
		if v != "" {
			t.Fatal(v)
		}

		br := bufio.NewReader(bytes.NewReader(c.Output()))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("handshake answer: %v %v", resp, err)
		}
		deflate := resp.Header.Get("Sec-WebSocket-Extensions") != ""
		checkServerFrames(t, br, deflate)
	})
}

// checkServerFrames reads what a server wrote after its 101 and fails on
// anything RFC 6455 forbids a server to send.
func checkServerFrames(t *testing.T, r *bufio.Reader, deflate bool) {
	t.Helper()
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if err == io.EOF {
				return
			}
			t.Fatalf("truncated frame header: %v", err)
		}
		fin, rsv, op := h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f
		if h[1]&0x80 != 0 {
			t.Fatal("a masked server frame")
		}
		if rsv != 0 && (rsv != 0x40 || !deflate || op >= opClose) {
			t.Fatalf("reserved bits %#x on opcode %d (deflate %v)", rsv, op, deflate)
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				t.Fatal(err)
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				t.Fatal(err)
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 64<<20 {
			t.Fatalf("frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatalf("truncated frame payload: %v", err)
		}
		switch op {
		case opText, opBinary, opContinuation:
		case opPing, opPong:
			if !fin || n > maxControlPayload {
				t.Fatalf("bad control frame: fin %v, %d bytes", fin, n)
			}
		case opClose:
			if !fin || n > maxControlPayload || n == 1 {
				t.Fatalf("bad close frame: fin %v, %d bytes", fin, n)
			}
			if n >= 2 {
				if code := int(binary.BigEndian.Uint16(payload)); !validReceivedCloseCode(code) {
					t.Fatalf("close code %d may not be sent", code)
				}
				if !utf8.Valid(payload[2:]) {
					t.Fatal("close reason is not UTF-8")
				}
			}
			if rest, _ := io.ReadAll(r); len(rest) > 0 {
				t.Fatalf("%d bytes after the close frame", len(rest))
			}
			return
		default:
			t.Fatalf("opcode %d", op)
		}
	}
}
