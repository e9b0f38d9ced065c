// Package jwtkey reads the public key that verifies subscriber tokens
// (--jwt-public-key) and names the one JWT algorithm it may verify, so
// that the algorithm is pinned by the key, never chosen by a token.
package jwtkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// MinRSABits is the smallest RSA modulus accepted (NIST SP 800-131A).
const MinRSABits = 2048

// ErrNoKey is returned for input that holds no PEM public key.
var ErrNoKey = errors.New("no PEM public key found (want a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block)")

// Key is a public key and the JWT algorithm ("alg") it verifies.
type Key struct {
	// Public is an *rsa.PublicKey, an *ecdsa.PublicKey on P-256 or an
	// ed25519.PublicKey.
	Public crypto.PublicKey
	// Alg is RS256, ES256 or EdDSA.
	Alg string
}

// Load reads the PEM file name; see Parse.
func Load(name string) (Key, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return Key{}, err
	}
	return Parse(b)
}

// Parse returns the key of the first PEM block of data that holds one: a
// PKIX "PUBLIC KEY", a PKCS #1 "RSA PUBLIC KEY", or a "CERTIFICATE" whose
// key is taken. The key must be RSA of at least MinRSABits bits (RS256),
// ECDSA on P-256 (ES256) or Ed25519 (EdDSA).
func Parse(data []byte) (Key, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return Key{}, ErrNoKey
		}
		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			continue // a private key or parameters next to the key
		}
		if err != nil {
			return Key{}, fmt.Errorf("%s block: %w", block.Type, err)
		}
		return keyOf(pub)
	}
}

func keyOf(pub any) (Key, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return Key{}, fmt.Errorf("an RSA key of %d bits is too weak: at least %d", n, MinRSABits)
		}
		return Key{Public: k, Alg: "RS256"}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return Key{}, fmt.Errorf("an ECDSA key on %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		return Key{Public: k, Alg: "ES256"}, nil
	case ed25519.PublicKey:
		return Key{Public: k, Alg: "EdDSA"}, nil
	default:
		return Key{}, fmt.Errorf("a %T key: want RSA (RS256), ECDSA P-256 (ES256) or Ed25519 (EdDSA)", pub)
	}
}
