package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key := writeKeyPair(t, dir)
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name   string
		change func(*Config)
		want   []string // substrings of the error, one FieldError each; none = valid
	}{
		{"address empty", func(c *Config) { c.Address = "" }, nil},
		{"address localhost", func(c *Config) { c.Address = "localhost" }, nil},
		{"address ipv6", func(c *Config) { c.Address = "::1" }, nil},
		{"address ipv4", func(c *Config) { c.Address = "127.0.0.1" }, nil},
		{"address name", func(c *Config) { c.Address = "example.com" }, []string{`address = "example.com": must be an IP address`}},
		{"address bracketed", func(c *Config) { c.Address = "[::1]" }, []string{`address = "[::1]"`}},
		{"address with port", func(c *Config) { c.Address = "127.0.0.1:80" }, []string{`address = "127.0.0.1:80"`}},

		{"port min", func(c *Config) { c.Port = 1 }, nil},
		{"port max", func(c *Config) { c.Port = 65535 }, nil},
		{"port zero", func(c *Config) { c.Port = 0 }, []string{"port = 0: must be between 1 and 65535"}},
		{"port too big", func(c *Config) { c.Port = 70000 }, []string{"port = 70000: must be between 1 and 65535"}},

		{"processes auto", func(c *Config) { c.Processes = 0 }, nil},
		{"processes many", func(c *Config) { c.Processes = 64 }, nil},
		{"processes negative", func(c *Config) { c.Processes = -1 }, []string{"processes = -1: must not be negative"}},
		{"processes max", func(c *Config) { c.Processes = 1024 }, nil},
		{"processes too many", func(c *Config) { c.Processes = 1025 }, []string{"processes = 1025: must be at most 1024"}},
		{"threads negative", func(c *Config) { c.Threads = -2 }, []string{"threads = -2: must not be negative"}},

		{"max-msg-size one", func(c *Config) { c.MaxMsgSize = 1 }, nil},
		{"max-msg-size 1TiB", func(c *Config) { c.MaxMsgSize = 1 << 40 }, nil},
		{"max-msg-size negative", func(c *Config) { c.MaxMsgSize = -1 }, []string{"max-msg-size = -1: must be positive"}},
		{"max-msg-size zero", func(c *Config) { c.MaxMsgSize = 0 }, []string{"max-msg-size = 0: must be positive"}},
		{"max-msg-size huge", func(c *Config) { c.MaxMsgSize = 1<<40 + 1 }, []string{"max-msg-size = 1099511627777: must be at most 1099511627776"}},

		{"timeout off", func(c *Config) { c.Timeout = 0 }, nil},
		{"timeout max", func(c *Config) { c.Timeout = 255 }, nil},
		{"timeout 256", func(c *Config) { c.Timeout = 256 }, []string{"timeout = 256: must be between 0 and 255"}},
		{"timeout negative", func(c *Config) { c.Timeout = -1 }, []string{"timeout = -1: must be between 0 and 255"}},
		{"shutdown-timeout zero", func(c *Config) { c.ShutdownTimeout = 0 }, []string{"shutdown-timeout = 0s: must be positive"}},
		{"shutdown-timeout negative", func(c *Config) { c.ShutdownTimeout = -time.Second }, []string{"shutdown-timeout = -1s: must be positive"}},
		{"worker-timeout off", func(c *Config) { c.WorkerTimeout = 0 }, nil},
		{"worker-timeout one second", func(c *Config) { c.WorkerTimeout = time.Second }, nil},
		{"worker-timeout too short", func(c *Config) { c.WorkerTimeout = 500 * time.Millisecond }, []string{"worker-timeout = 500ms: must be 0 (off) or at least 1s"}},
		{"worker-timeout negative", func(c *Config) { c.WorkerTimeout = -time.Second }, []string{"worker-timeout = -1s: must be 0 (off) or at least 1s"}},

		{"compression-level 9", func(c *Config) { c.CompressionLevel = 9 }, nil},
		{"compression-level 0", func(c *Config) { c.CompressionLevel = 0 }, []string{"compression-level = 0: must be between 1 and 9"}},
		{"compression-level 10", func(c *Config) { c.CompressionLevel = 10 }, []string{"compression-level = 10: must be between 1 and 9"}},
		{"compression-threshold 0", func(c *Config) { c.CompressionThreshold = 0 }, nil},
		{"compression-threshold negative", func(c *Config) { c.CompressionThreshold = -1 }, []string{"compression-threshold = -1: must not be negative"}},
		{"max-backpressure min", func(c *Config) { c.MaxBackpressure = 1024 }, nil},
		{"max-backpressure small", func(c *Config) { c.MaxBackpressure = 1023 }, []string{"max-backpressure = 1023: must be at least 1024"}},

		{"origins good", func(c *Config) {
			c.AllowedOrigins = []string{"*", "https://example.com", "http://localhost:8080", "https://*.example.com", "http://[::1]:3000", "app://x"}
		}, nil},
		{"origins bad", func(c *Config) {
			c.AllowedOrigins = []string{"example.com", "https://example.com/", "https://Example.com", "https://example.com:0", "https://a*.example.com", "null", ""}
		}, []string{
			`allowed-origins = "example.com": must be "*" or scheme://host[:port]`,
			`allowed-origins = "https://example.com/"`,
			`allowed-origins = "https://Example.com"`,
			`allowed-origins = "https://example.com:0": port must be between 1 and 65535`,
			`allowed-origins = "https://a*.example.com"`,
			`allowed-origins = "null"`,
			`allowed-origins = ""`,
		}},
		{"subprotocols good", func(c *Config) { c.Subprotocols = []string{"chat.v2", "graphql-transport-ws", "x_y~1"} }, nil},
		{"subprotocols bad", func(c *Config) { c.Subprotocols = []string{"", "a b", "a,b", "é"} }, []string{
			`subprotocols = "": must be an HTTP token`,
			`subprotocols = "a b"`,
			`subprotocols = "a,b"`,
			`subprotocols = "é"`,
		}},

		{"max-header-size bounds", func(c *Config) { c.MaxHeaderSize = 1024 }, nil},
		{"max-header-size small", func(c *Config) { c.MaxHeaderSize = 1023 }, []string{"max-header-size = 1023: must be between 1024 and 1048576"}},
		{"max-header-size big", func(c *Config) { c.MaxHeaderSize = 1<<20 + 1 }, []string{"max-header-size = 1048577: must be between 1024 and 1048576"}},
		{"header-timeout zero", func(c *Config) { c.HeaderTimeout = 0 }, []string{"header-timeout = 0s: must be positive"}},
		{"idle-timeout zero", func(c *Config) { c.IdleTimeout = 0 }, []string{"idle-timeout = 0s: must be positive"}},
		{"max-body-size zero", func(c *Config) { c.MaxBodySize = 0 }, []string{"max-body-size = 0: must be positive"}},
		{"max-conns negative", func(c *Config) { c.MaxConns = -1 }, []string{"max-conns = -1: must not be negative"}},
		{"max-conns-per-ip negative", func(c *Config) { c.MaxConnsPerIP = -1 }, []string{"max-conns-per-ip = -1: must not be negative"}},

		{"tls pair", func(c *Config) { c.TLSCert, c.TLSKey = cert, key }, nil},
		{"tls cert only", func(c *Config) { c.TLSCert = cert }, []string{`tls-key = "": must be set when tls-cert is`}},
		{"tls key only", func(c *Config) { c.TLSKey = key }, []string{`tls-cert = "": must be set when tls-key is`}},
		{"tls missing files", func(c *Config) { c.TLSCert, c.TLSKey = missing, dir }, []string{
			`tls-cert = "` + missing + `": does not exist`,
			`tls-key = "` + dir + `": is a directory`,
		}},
		{"tls swapped", func(c *Config) { c.TLSCert, c.TLSKey = key, cert }, []string{`tls-cert = "` + key + `": cannot be used with tls-key`}},
		{"tls not pem", func(c *Config) { c.TLSCert, c.TLSKey = file, file }, []string{`tls-cert = "` + file + `": cannot be used`}},

		{"redis", func(c *Config) { c.Redis = "redis://localhost:6379/0" }, nil},
		{"rediss no db", func(c *Config) { c.Redis = "rediss://user:pw@cache:6380" }, nil},
		{"redis bad scheme", func(c *Config) { c.Redis = "http://localhost:6379" }, []string{`redis = "http://localhost:6379": must be a URL`}},
		{"redis no host", func(c *Config) { c.Redis = "redis://" }, []string{`redis = "redis://": must be a URL`}},
		{"redis bad db", func(c *Config) { c.Redis = "redis://localhost/x" }, []string{`redis = "redis://localhost/x": database must be a number`}},
		{"redis option", func(c *Config) { c.Redis = "redis://localhost:6379/0?dial_timeout=3s" }, nil},
		{"redis unknown option", func(c *Config) { c.Redis = "redis://localhost:6379/0?dial_timeot=3s" }, []string{`redis = "redis://localhost:6379/0?dial_timeot=3s": unexpected option: dial_timeot`}},
		{"redis bad option", func(c *Config) { c.Redis = "redis://localhost:6379/0?dial_timeout=soon" }, []string{`redis = "redis://localhost:6379/0?dial_timeout=soon": invalid dial_timeout duration`}},
		{"redis bad port", func(c *Config) { c.Redis = "redis://localhost:99999/0" }, []string{`redis = "redis://localhost:99999/0": port must be between 1 and 65535`}},
		{"redis password hidden", func(c *Config) { c.Redis = "redis://u:secret@h:6379/db" }, []string{`redis = "redis://u:xxxxx@h:6379/db"`}},

		{"publish-token", func(c *Config) { c.PublishToken = "abc.DEF-123_~+/=" }, nil},
		{"publish-token space", func(c *Config) { c.PublishToken = "my secret" }, []string{`publish-token = "<redacted>": must not contain spaces`}},

		{"public dir", func(c *Config) { c.Public = dir }, nil},
		{"public missing", func(c *Config) { c.Public = missing }, []string{`public = "` + missing + `": does not exist`}},
		{"public file", func(c *Config) { c.Public = file }, []string{`public = "` + file + `": is not a directory`}},

		{"admin-address", func(c *Config) { c.AdminAddress = "127.0.0.1:9090" }, nil},
		{"admin-address all", func(c *Config) { c.AdminAddress = ":9090" }, nil},
		{"admin-address ipv6", func(c *Config) { c.AdminAddress = "[::1]:9090" }, nil},
		{"admin-address no port", func(c *Config) { c.AdminAddress = "127.0.0.1" }, []string{`admin-address = "127.0.0.1": must be host:port`}},
		{"admin-address port 0", func(c *Config) { c.AdminAddress = "localhost:0" }, []string{`admin-address = "localhost:0": port must be between 1 and 65535`}},
		{"admin-address host", func(c *Config) { c.AdminAddress = "example.com:80" }, []string{`admin-address = "example.com:80": host must be an IP address`}},

		{"log-format json", func(c *Config) { c.LogFormat = "json" }, nil},
		{"log-format xml", func(c *Config) { c.LogFormat = "xml" }, []string{`log-format = "xml": must be text or json`}},
		{"log-level debug", func(c *Config) { c.LogLevel = "debug" }, nil},
		{"log-level upper", func(c *Config) { c.LogLevel = "INFO" }, []string{`log-level = "INFO": must be debug, info, warn or error`}},

		{"several at once", func(c *Config) { c.Port, c.Timeout, c.LogFormat = -1, 300, "" }, []string{
			"port = -1:", "timeout = 300:", `log-format = "":`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Validate() reported %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.Contains(lines[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], want)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("errors.As(%v, *FieldError) = false", err)
			}
			if field, _, _ := strings.Cut(tt.want[0], " ="); fe.Field != field {
				t.Errorf("first FieldError.Field = %q, want %q", fe.Field, field)
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		err  FieldError
		want string
	}{
		{FieldError{"port", 70000, "must be between 1 and 65535"}, "port = 70000: must be between 1 and 65535"},
		{FieldError{"log-format", "a b", "must be text or json"}, `log-format = "a b": must be text or json`},
		{FieldError{"idle-timeout", time.Duration(0), "must be positive"}, "idle-timeout = 0s: must be positive"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestListenAddr(t *testing.T) {
	tests := []struct {
		address string
		port    int
		want    string
	}{
		{"0.0.0.0", 3000, "0.0.0.0:3000"},
		{"", 80, ":80"},
		{"::1", 8080, "[::1]:8080"},
		{"localhost", 1, "localhost:1"},
	}
	for _, tt := range tests {
		c := Default()
		c.Address, c.Port = tt.address, tt.port
		if got := c.ListenAddr(); got != tt.want {
			t.Errorf("ListenAddr() with %q, %d = %q, want %q", tt.address, tt.port, got, tt.want)
		}
	}
}

// writeKeyPair writes a self-signed certificate and its key as PEM files.
func writeKeyPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
