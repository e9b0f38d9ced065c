package conformance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// naiveServer is a WebSocket echo server that checks nothing: it upgrades
// any request and sends every frame back as it came, unmasked. The one
// exceptions are RSV bits, on which it drops TCP without a close frame,
// and frames over 1 MiB, on which it stops answering. It
// exists so the suite can be seen to judge: each of its shortcuts must
// turn into the verdict the RFC calls for.
func naiveServer(t *testing.T) *Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[nc] = true
			mu.Unlock()
			wg.Go(func() {
				defer nc.Close()
				naiveEcho(nc)
			})
		}
	})
	return &Target{Addr: ln.Addr().String(), MaxMessageSize: 1 << 10, Timeout: 500 * time.Millisecond}
}

func naiveEcho(nc net.Conn) {
	br := bufio.NewReader(nc)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	fmt.Fprintf(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		acceptKey(req.Header.Get("Sec-WebSocket-Key")))
	for {
		f, err := readFrame(br, 1<<20)
		if errors.Is(err, errFrameTooLarge) {
			io.Copy(io.Discard, br) // hang until the client gives up
			return
		}
		if err != nil || f.rsv != 0 {
			return
		}
		f.masked = false
		if f.opcode == opPing {
			f.opcode = opPong
		}
		if _, err := nc.Write(appendFrame(nil, f)); err != nil || f.opcode == opClose {
			return
		}
	}
}

func TestVerdicts(t *testing.T) {
	target := naiveServer(t)
	want := map[string]Verdict{
		"0.1":     OK,        // valid handshake and echo
		"0.2":     Failed,    // upgraded without Sec-WebSocket-Key
		"1.1.7":   OK,        // 64 KiB text echo
		"1.3.3":   Failed,    // stops answering a 2^40-byte frame: timeout
		"2.1":     OK,        // ping answered
		"2.5":     Failed,    // 126-byte ping answered by a 126-byte pong
		"3.1":     NonStrict, // RSV bit: TCP dropped without close frame
		"4.1.1":   Failed,    // reserved opcode echoed back
		"5.3":     OK,        // fragments echoed as fragments
		"5.18":    Failed,    // bad fragment sequence echoed back
		"6.3.1":   Failed,    // invalid UTF-8 echoed
		"7.3.3":   OK,        // close 1000 echoed
		"7.9.1":   Failed,    // close code 0 echoed: invalid on the wire
		"9.9.1":   Failed,    // over the limit, echoed anyway
		"13.1.1":  Failed,    // compression offered, never accepted
		"13.11.1": OK,        // bad offer declined (by ignoring it)
	}
	cases := map[string]Case{}
	for _, c := range Cases() {
		cases[c.ID] = c
	}
	var report Report
	for id, v := range want {
		c, ok := cases[id]
		if !ok {
			t.Fatalf("no case %s", id)
		}
		res := RunCase(context.Background(), target, c)
		report.Add(c, res)
		t.Logf("%s %s: %s", id, res.Verdict, res.Reason)
		if res.Verdict != v {
			t.Errorf("case %s against a naive server: %s (%s), want %s", id, res.Verdict, res.Reason, v)
		}
		if res.Reason == "" {
			t.Errorf("case %s: verdict without a reason", id)
		}
	}
	var out strings.Builder
	report.WriteTo(&out)
	if summary := fmt.Sprintf("%d passed, %d failed\n", 7, 9); !strings.HasSuffix(out.String(), summary) {
		t.Errorf("report does not end with %q:\n%s", summary, out.String())
	}
	if !strings.Contains(out.String(), "6 OK, 1 NON-STRICT") {
		t.Errorf("report lacks the verdict counts:\n%s", out.String())
	}
}

func TestVerdictString(t *testing.T) {
	for v, s := range map[Verdict]string{OK: "OK", NonStrict: "NON-STRICT", Failed: "FAILED", 7: "Verdict(7)"} {
		if v.String() != s {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), v.String(), s)
		}
	}
}
