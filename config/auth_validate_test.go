package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestValidateSubscriberSettings covers the settings of subscriber
// authentication and Server-Sent Events.
func TestValidateSubscriberSettings(t *testing.T) {
	dir := t.TempDir()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	writeKey := func(name string, pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good, weak := writeKey("es256.pem", &p256.PublicKey), writeKey("es384.pem", &p384.PublicKey)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name   string
		change func(*Config)
		want   string // the start of the one error; "" = valid
	}{
		{"secret", func(c *Config) { c.JWTSecret = strings.Repeat("k", 32) }, ""},
		{"secret short", func(c *Config) { c.JWTSecret = "short" }, `jwt-secret = "<redacted>": must be at least 32 bytes`},
		{"public key", func(c *Config) { c.JWTPublicKey = good }, ""},
		{"both", func(c *Config) { c.JWTSecret, c.JWTPublicKey = strings.Repeat("k", 32), good }, ""},
		{"public key missing", func(c *Config) { c.JWTPublicKey = missing }, `jwt-public-key = "` + missing + `": does not exist`},
		{"public key dir", func(c *Config) { c.JWTPublicKey = dir }, `jwt-public-key = "` + dir + `": is a directory`},
		{"public key garbage", func(c *Config) { c.JWTPublicKey = garbage }, `jwt-public-key = "` + garbage + `": no PEM public key`},
		{"public key P-384", func(c *Config) { c.JWTPublicKey = weak }, `jwt-public-key = "` + weak + `": an ECDSA key on P-384`},
		{"cookie empty", func(c *Config) { c.JWTCookie = "" }, ""},
		{"cookie bad", func(c *Config) { c.JWTCookie = "a b" }, `jwt-cookie = "a b": must be an HTTP token`},
		{"heartbeat short", func(c *Config) { c.SSEHeartbeat = 10 * time.Millisecond }, `sse-heartbeat = 10ms: must be at least 100ms`},
		{"heartbeat zero", func(c *Config) { c.SSEHeartbeat = 0 }, `sse-heartbeat = 0s: must be at least 100ms`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Validate() = %v, want one error starting %q", err, tt.want)
			}
		})
	}
}
