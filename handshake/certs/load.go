// Package certs loads x509 credentials, trust anchors and CRLs, and builds
// the crypto/tls configurations of the daemon's x509 handshakes: the
// client side of NFS xprtsec=tls/mtls (verify the server against the
// kernel's PEERNAME, optionally present a certificate) and the server side
// (present a certificate, optionally or mandatorily verify the client's).
//
// Policies beyond chain verification (CRL revocation, EKU requirements,
// SAN allow-lists) are enforced in tls.Config.VerifyConnection, so a
// handshake run through package stdtls reports them as a sent
// bad_certificate alert wrapping this package's errors (ErrRevoked,
// *NameNotAllowedError, …).
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxChainLen is the longest certificate chain accepted, loaded or sent
// by a peer; ktls-utils reads at most 10 certificates.
const MaxChainLen = 10

// Errors of loading.
var (
	ErrNoCertificate = errors.New("certs: no certificate")
	ErrNoKey         = errors.New("certs: no private key")
	ErrKeyMismatch   = errors.New("certs: private key does not match the certificate")
	ErrChainTooLong  = fmt.Errorf("certs: more than %d certificates in a chain", MaxChainLen)
	ErrEncryptedKey  = errors.New("certs: encrypted private keys are not supported")
	ErrNoKeyOpener   = errors.New("certs: a TPM key (TSS2 PRIVATE KEY) needs a TPM, and none is configured")
	ErrNotSigner     = errors.New("certs: the private key cannot sign")
)

// TSS2PEMType is the PEM type of TPM 2.0 key files (tpm2-openssl,
// GnuTLS, go-tpm-keyfiles).
const TSS2PEMType = "TSS2 PRIVATE KEY"

// A KeyOpener turns a TPM key file (a PEM "TSS2 PRIVATE KEY" block, as
// given) into a signer; package tpmkey provides one. The signer may also
// be an io.Closer; see CloseKey.
type KeyOpener func(tss2PEM []byte) (crypto.Signer, error)

// LoadFiles loads a certificate chain (leaf first; PEM, or DER) and its
// private key (PEM: PKCS #8, PKCS #1, SEC1, or a TSS2 key opened with
// opener; or DER). An empty keyFile means the key is in certFile.
func LoadFiles(certFile, keyFile string, opener KeyOpener) (tls.Certificate, error) {
	certData, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: reading certificate: %w", err)
	}
	keyData := certData
	if keyFile != "" && keyFile != certFile {
		if keyData, err = os.ReadFile(keyFile); err != nil {
			return tls.Certificate{}, fmt.Errorf("certs: reading private key: %w", err)
		}
	} else {
		keyFile = certFile
	}
	chain, err := ParseCertificates(certData)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %s: %w", certFile, err)
	}
	key, err := parseKey(keyData, opener)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %s: %w", keyFile, err)
	}
	c, err := assemble(chain, key)
	if err != nil {
		CloseKey(tls.Certificate{PrivateKey: key})
		return tls.Certificate{}, fmt.Errorf("certs: %s: %w", certFile, err)
	}
	return c, nil
}

// FromDER builds a credential from kernel keyring payloads: certDER is
// one DER certificate or a chain of concatenated ones (leaf first), and
// keyDER a DER private key in PKCS #8, PKCS #1 or SEC1 form. PEM is
// accepted for either as well.
func FromDER(certDER, keyDER []byte) (tls.Certificate, error) {
	chain, err := ParseCertificates(certDER)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := parseKey(keyDER, nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	return assemble(chain, key)
}

// CloseKey closes the certificate's private key if it holds a resource
// (a TPM-resident key does).
func CloseKey(c tls.Certificate) error {
	if cl, ok := c.PrivateKey.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

func assemble(chain []*x509.Certificate, key crypto.Signer) (tls.Certificate, error) {
	if len(chain) > MaxChainLen {
		return tls.Certificate{}, ErrChainTooLong
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return tls.Certificate{}, ErrKeyMismatch
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *rsa.PublicKey:
		return a.Equal(b)
	case *ecdsa.PublicKey:
		return a.Equal(b)
	case ed25519.PublicKey:
		return a.Equal(b)
	}
	return false
}

// ParseCertificates parses certificates from PEM (every CERTIFICATE
// block; other blocks are skipped) or from DER (one certificate or
// several concatenated). The order is kept.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	ders, err := certificateDERs(data)
	if err != nil {
		return nil, err
	}
	out := make([]*x509.Certificate, 0, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certs: certificate %d: %w", i+1, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func isPEM(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN "))
}

// certificateDERs splits data into DER certificates without parsing them.
func certificateDERs(data []byte) ([][]byte, error) {
	ders, err := derBlocks(data, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("%w (neither PEM nor DER): %w", ErrNoCertificate, err)
	}
	if len(ders) == 0 {
		return nil, ErrNoCertificate
	}
	return ders, nil
}

// derBlocks returns the DER bodies of the PEM blocks of type pemType in
// data, or, if data is not PEM, its concatenated DER values.
func derBlocks(data []byte, pemType string) ([][]byte, error) {
	if !isPEM(data) {
		return SplitDER(data)
	}
	var ders [][]byte
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return ders, nil
		}
		if b.Type == pemType {
			ders = append(ders, b.Bytes)
		}
	}
}

// SplitDER splits concatenated DER values (each an ASN.1 SEQUENCE, as
// certificates, CRLs and keys are). It fails on anything else, including
// trailing bytes.
func SplitDER(data []byte) ([][]byte, error) {
	var out [][]byte
	s := cryptobyte.String(data)
	for !s.Empty() {
		var elem cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1Element(&elem, &tag) || tag != cbasn1.SEQUENCE {
			return nil, fmt.Errorf("certs: malformed DER after %d values", len(out))
		}
		out = append(out, elem)
	}
	return out, nil
}

// parseKey parses the first private key in data (PEM or DER).
func parseKey(data []byte, opener KeyOpener) (crypto.Signer, error) {
	if !isPEM(data) {
		return ParsePrivateKeyDER(data)
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, ErrNoKey
		}
		if _, ok := b.Headers["Proc-Type"]; ok {
			return nil, ErrEncryptedKey
		}
		switch b.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return ParsePrivateKeyDER(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, ErrEncryptedKey
		case TSS2PEMType:
			if opener == nil {
				return nil, ErrNoKeyOpener
			}
			s, err := opener(pem.EncodeToMemory(b))
			if err != nil {
				return nil, fmt.Errorf("certs: opening TPM key: %w", err)
			}
			return s, nil
		}
	}
}

// ParsePrivateKeyDER parses a DER private key in PKCS #8, PKCS #1 (RSA)
// or SEC1 (EC) form: what the kernel keyring holds.
func ParsePrivateKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w (%T)", ErrNotSigner, k)
		}
		return s, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: not a PKCS #8, PKCS #1 or SEC1 key", ErrNoKey)
}

// LoadRoots builds a pool of trust anchors from PEM or DER files, or from
// the files in a directory (those that do not parse as certificates are
// skipped). No paths means the system pool.
func LoadRoots(paths ...string) (*x509.CertPool, error) {
	if len(paths) == 0 {
		p, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("certs: system trust anchors: %w", err)
		}
		return p, nil
	}
	pool := x509.NewCertPool()
	for _, path := range paths {
		files, err := expandDir(path)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("certs: reading trust anchors: %w", err)
			}
			certs, err := ParseCertificates(data)
			if err != nil {
				if f != path {
					continue // in a directory, files that are not certificates are skipped
				}
				return nil, fmt.Errorf("certs: %s: %w", f, err)
			}
			for _, c := range certs {
				pool.AddCert(c)
			}
			n += len(certs)
		}
		if n == 0 {
			return nil, fmt.Errorf("certs: %s: %w", path, ErrNoCertificate)
		}
	}
	return pool, nil
}

func expandDir(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	return out, nil
}
