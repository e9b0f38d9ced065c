package jwtkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
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

func pkixPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestParse(t *testing.T) {
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jwt"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, edPub, edPriv)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})

	tests := []struct {
		name    string
		data    []byte
		alg     string
		wantErr string
	}{
		{"RSA PKIX", pkixPEM(t, &rsa2048.PublicKey), "RS256", ""},
		{"RSA PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsa2048.PublicKey)}), "RS256", ""},
		{"RSA 1024", pkixPEM(t, &rsa1024.PublicKey), "", "too weak"},
		{"P-256", pkixPEM(t, &p256.PublicKey), "ES256", ""},
		{"P-384", pkixPEM(t, &p384.PublicKey), "", "ES256 needs P-256"},
		{"Ed25519", pkixPEM(t, edPub), "EdDSA", ""},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), "EdDSA", ""},
		{"private key first", append(privPEM, pkixPEM(t, edPub)...), "EdDSA", ""},
		{"private key only", privPEM, "", "no PEM public key"},
		{"not PEM", []byte("hello"), "", "no PEM public key"},
		{"empty", nil, "", "no PEM public key"},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), "", "PUBLIC KEY block"},
	}
	for _, tt := range tests {
		k, err := Parse(tt.data)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", tt.name, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case k.Alg != tt.alg:
			t.Errorf("%s: alg %q, want %q", tt.name, k.Alg, tt.alg)
		}
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	name := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(name, []byte("garbage"), 0o600)
	if _, err := Load(name); !errors.Is(err, ErrNoKey) {
		t.Errorf("Load(garbage) = %v, want ErrNoKey", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err == nil && k.Alg == "" {
			t.Fatalf("Parse(%q) gave a key with no algorithm", data)
		}
	})
}
