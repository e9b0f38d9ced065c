package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsd-server/wsd/bench/stats"
)

// ErrResponse reports an HTTP response the client could not parse or did not
// expect.
var ErrResponse = errors.New("load: bad HTTP response")

// HTTPOptions describes an HTTP run: Conns keep-alive connections each send
// GET requests one after the other (no pipelining) for Duration.
type HTTPOptions struct {
	// URL is the page to get, e.g. http://127.0.0.1:8080/.
	URL string
	// Conns is the number of connections; 0 means 1.
	Conns int
	// Duration is how long requests are sent, after every connection is open.
	Duration time.Duration
	// Expect, if not empty, is the body every response must have.
	Expect string
	// ServerPID, if positive, is the server whose CPU time is measured.
	ServerPID int
	// Counter, if not nil, is incremented per response.
	Counter *atomic.Int64
}

// HTTPResult is what an HTTP run measured.
type HTTPResult struct {
	// Requests is the number of 200 responses within Duration.
	Requests int64
	// Elapsed is the measured interval.
	Elapsed time.Duration
	// Latency holds the time from request to response of every request.
	Latency *stats.Histogram
	// ServerCPU is the server's CPU time over the interval (0 without a pid).
	ServerCPU time.Duration
}

// ReqPerSec returns the requests per second.
func (r HTTPResult) ReqPerSec() float64 { return perSecond(r.Requests, r.Elapsed) }

// CPUPerReq returns the server CPU time per request.
func (r HTTPResult) CPUPerReq() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Requests)
}

// HTTP runs an HTTP GET benchmark with a minimal HTTP/1.1 client, so that
// the client's own cost stays small and equal for every server.
func HTTP(ctx context.Context, o HTTPOptions) (HTTPResult, error) {
	if o.Duration <= 0 {
		return HTTPResult{}, errors.New("load: http needs a positive duration")
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return HTTPResult{}, fmt.Errorf("load: bad http URL %q", o.URL)
	}
	path := u.RequestURI()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: wsd-bench\r\n\r\n")

	n := max(o.Conns, 1)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var d net.Dialer
	for range n {
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return HTTPResult{}, fmt.Errorf("load: http connect: %w", err)
		}
		conns = append(conns, c)
	}

	res := HTTPResult{Latency: new(stats.Histogram)}
	var (
		total atomic.Int64
		errs  firstError
		wg    sync.WaitGroup
	)
	meter := startCPU(o.ServerPID)
	end := time.Now().Add(o.Duration)
	for i, c := range conns {
		wg.Go(func() {
			c.SetDeadline(end.Add(5 * time.Second))
			bw := bufio.NewWriterSize(c, len(req))
			br := bufio.NewReaderSize(c, 4096)
			var count int64
			defer func() { total.Add(count) }()
			var body []byte
			for {
				t0 := time.Now()
				bw.Write(req)
				if err := bw.Flush(); err != nil {
					errs.set(fmt.Errorf("load: http connection %d: %w", i+1, err))
					return
				}
				status, b, err := readResponse(br, body[:0])
				now := time.Now()
				if err != nil {
					errs.set(fmt.Errorf("load: http connection %d: %w", i+1, err))
					return
				}
				body = b
				if status != 200 || (o.Expect != "" && string(body) != o.Expect) {
					errs.set(fmt.Errorf("%w: status %d, body %q", ErrResponse, status, truncate(body, 64)))
					return
				}
				if now.After(end) || ctx.Err() != nil {
					return
				}
				count++
				res.Latency.Record(now.Sub(t0))
				if o.Counter != nil {
					o.Counter.Add(1)
				}
			}
		})
	}
	wg.Wait()
	res.Elapsed = o.Duration
	res.Requests = total.Load()
	var cerr error
	if res.ServerCPU, cerr = meter.stop(); cerr != nil {
		errs.set(fmt.Errorf("load: server CPU: %w", cerr))
	}
	if ctx.Err() != nil {
		errs.set(ctx.Err())
	}
	return res, errs.get()
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// readResponse reads one HTTP/1.1 response with a Content-Length (or chunked)
// body from br, appending the body to body. It is deliberately small: it
// accepts what a server answering GET sends, nothing fancier.
func readResponse(br *bufio.Reader, body []byte) (status int, _ []byte, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, body, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, body, fmt.Errorf("%w: status line %q", ErrResponse, truncate(line, 64))
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 {
		return 0, body, fmt.Errorf("%w: status line %q", ErrResponse, truncate(line, 64))
	}
	length := -1
	chunked := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, body, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, body, fmt.Errorf("%w: header line %q", ErrResponse, truncate(line, 64))
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil || length < 0 || length > MaxMessageSize {
				return 0, body, fmt.Errorf("%w: Content-Length %q", ErrResponse, truncate(value, 64))
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
	switch {
	case status == 204 || status == 304 || status < 200:
		return status, body, nil
	case chunked:
		return readChunked(br, body, status)
	case length < 0:
		return 0, body, fmt.Errorf("%w: no Content-Length on a keep-alive response", ErrResponse)
	}
	n := len(body)
	body = grow(body, length)
	if _, err := io.ReadFull(br, body[n:]); err != nil {
		return 0, body, err
	}
	return status, body, nil
}

func readChunked(br *bufio.Reader, body []byte, status int) (int, []byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, body, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 31)
		if err != nil || len(body)+int(size) > MaxMessageSize {
			return 0, body, fmt.Errorf("%w: chunk size %q", ErrResponse, truncate(line, 64))
		}
		if size == 0 {
			// Trailers, then the final empty line.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return 0, body, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return status, body, nil
				}
			}
		}
		n := len(body)
		body = grow(body, int(size))
		if _, err := io.ReadFull(br, body[n:]); err != nil {
			return 0, body, err
		}
		if _, err := br.Discard(2); err != nil {
			return 0, body, err
		}
	}
}
