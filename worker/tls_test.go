package worker

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// selfSigned writes a fresh certificate for 127.0.0.1 and its key to dir
// and returns their paths and a pool that trusts the certificate.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wsd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func tlsClient(t testing.TB, pool *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestTLS(t *testing.T) {
	cfg := testConfig()
	var pool *x509.CertPool
	cfg.TLSCert, cfg.TLSKey, pool = selfSigned(t, t.TempDir())
	cfg.MaxConns = 3
	s := serve(t, cfg)
	client := tlsClient(t, pool)

	t.Run("https", func(t *testing.T) {
		resp, err := client.Get(s.url("https", "/"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "Hello World!" || resp.TLS == nil {
			t.Fatalf("got %d %q over TLS %v", resp.StatusCode, body, resp.TLS != nil)
		}
		if resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("TLS version %x", resp.TLS.Version)
		}
		client.CloseIdleConnections()
	})
	t.Run("wss echo", func(t *testing.T) {
		c, _ := wsDial(t, s.url("wss", "/"), &websocket.DialOptions{HTTPClient: client})
		big := bytes.Repeat([]byte("tls!"), 50000)
		for _, m := range [][]byte{[]byte("hello"), big} {
			writeMsg(t, c, websocket.MessageBinary, m)
			if _, data := readMsg(t, c); !bytes.Equal(data, m) {
				t.Fatalf("echo of %d bytes came back as %d bytes", len(m), len(data))
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("wss broadcast", func(t *testing.T) {
		a, _ := wsDial(t, s.url("wss", "/broadcast"), &websocket.DialOptions{HTTPClient: client})
		b, _ := wsDial(t, s.url("wss", "/broadcast"), &websocket.DialOptions{HTTPClient: client})
		waitUntil(t, "both clients", 5*time.Second, func() bool { return s.WebSocket().Count() == 2 })
		writeMsg(t, a, websocket.MessageText, []byte("over tls"))
		if _, data := readMsg(t, b); string(data) != "over tls" {
			t.Fatalf("got %q", data)
		}
		a.Close(websocket.StatusNormalClosure, "")
		b.Close(websocket.StatusNormalClosure, "")
	})
	waitUntil(t, "every connection to end", 5*time.Second, func() bool { return s.WebSocket().Count() == 0 })

	for _, v := range []struct {
		name string
		max  uint16
		ok   bool
	}{
		{"TLS 1.0 refused", tls.VersionTLS10, false},
		{"TLS 1.1 refused", tls.VersionTLS11, false},
		{"TLS 1.2 accepted", tls.VersionTLS12, true},
		{"TLS 1.3 accepted", tls.VersionTLS13, true},
	} {
		t.Run(v.name, func(t *testing.T) {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
				Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: v.max}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", s.addr)
			if err == nil {
				c.Close()
			}
			if (err == nil) != v.ok {
				t.Fatalf("handshake with TLS up to %x: %v", v.max, err)
			}
		})
	}

	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		nc, br := rawSend(t, s.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		b, _ := io.ReadAll(br)
		if bytes.Contains(b, []byte("Hello World!")) {
			t.Fatal("served plain HTTP on the TLS port")
		}
		nc.Close()
	})

	t.Run("a silent client is cut at the header timeout", func(t *testing.T) {
		// No ClientHello at all: the handshake runs under the header
		// deadline like the request it precedes.
		cfg := cfg
		cfg.HeaderTimeout = time.Second
		s := serve(t, cfg)
		nc, br := rawSend(t, s.addr, "")
		if d := waitClosed(t, nc, br); d > 5*time.Second {
			t.Errorf("cut after %s", d)
		}
	})

	t.Run("over max-conns the connection is closed", func(t *testing.T) {
		waitUntil(t, "no connection left", 5*time.Second, func() bool { return s.limit.Open() == 0 })
		opts := &websocket.DialOptions{HTTPClient: client}
		for range 3 {
			wsDial(t, s.url("wss", "/"), opts)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: pool}}
		if c, err := d.DialContext(ctx, "tcp", s.addr); err == nil {
			c.Close()
			t.Fatal("a TLS connection over the limit completed its handshake")
		}
	})
}
