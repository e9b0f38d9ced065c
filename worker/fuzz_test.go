package worker

import (
	"bufio"
	"bytes"
	"github.com/wsd-server/wsd/internal/memconn"
	"net/http"
	"strings"
	"testing"
	"time"
)

// upgradeSeeds are requests near the interesting edges of the upgrade.
var upgradeSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85\x01\x02\x03\x04iaohn\x88\x80\x00\x00\x00\x00",
	"GET /broadcast HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Protocol: chat, x\r\nOrigin: http://a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
	"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 3\r\n\r\nabc",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n",
	"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"GET /pubsub/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
	"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 3000) + "\r\n\r\n",
}

// FuzzUpgrade runs arbitrary bytes through a worker as one client
// connection: HTTP requests, upgrades and what follows them. The worker
// must not panic or hang, must answer with well-formed HTTP, and must let
// go of every WebSocket once the input ends.
func FuzzUpgrade(f *testing.F) {
	for _, s := range upgradeSeeds {
		f.Add([]byte(s))
	}
	cfg := testConfig()
	cfg.MaxHeaderSize = 2048
	cfg.MaxBodySize = 1024
	cfg.MaxMsgSize = 1024
	cfg.Compression = true
	cfg.Subprotocols = []string{"chat"}
	w, err := New(cfg, Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		c := memconn.New(input)
		done := make(chan error, 1)
		go func() { done <- w.http.ServeConn(c) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return")
		}
		// An upgraded connection goes on in the background until the
		// input runs out; fasthttp closes the connection then.
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the connection was never closed")
		}
		waitUntil(t, "the WebSocket to end", 10*time.Second, func() bool { return w.ws.Count() == 0 })

		out := c.Output()
		if len(out) == 0 {
			return // nothing to answer, as for an empty input
		}
		br := bufio.NewReader(bytes.NewReader(out))
		resp, err := http.ReadResponse(br, nil)
		if err == nil && resp.StatusCode == http.StatusContinue {
			resp, err = http.ReadResponse(br, nil) // the final answer follows
		}
		if err != nil {
			t.Fatalf("malformed response %q: %v", out, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 100 || resp.StatusCode > 599 || resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
			t.Fatalf("response line %q", resp.Status)
		}
		if resp.Header.Get("Wsd-Worker") == "" {
			t.Errorf("response %d without Wsd-Worker", resp.StatusCode)
		}
		if resp.StatusCode == 101 {
			if resp.Header.Get("Sec-WebSocket-Accept") == "" {
				t.Error("101 without Sec-WebSocket-Accept")
			}
			if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" && p != "chat" {
				t.Errorf("101 chose subprotocol %q, which the server does not speak", p)
			}
		}
	})
}
