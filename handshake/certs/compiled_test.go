package certs

import (
	"bytes"
	"crypto"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
)

func TestLoaderShares(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, certstest.ECDSAP256, "root")
	leaf := ca.Leaf(t, certstest.ECDSAP256, certstest.DNS("a.example.com"))
	caFile := certstest.WriteFile(t, dir, "ca.pem", certstest.CertPEM(ca.Cert))
	crlFile := certstest.WriteFile(t, dir, "ca.crl", certstest.CRLPEM(ca.CRL(t)))
	cert := certstest.WriteFile(t, dir, "c.pem", certstest.CertPEM(leaf.Chain()...))
	key := certstest.WriteFile(t, dir, "c.key", certstest.KeyPEM(t, leaf.Key))

	var l Loader
	f := Files{TrustAnchors: []string{caFile}, CRLs: []string{crlFile}, Certificate: cert, PrivateKey: key, AllowedNames: []string{"*.example.com"}}
	a, err := l.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if a.Credential() != b.Credential() || a.CRLs() != b.CRLs() || a.Names() != b.Names() || a.anchors != b.anchors {
		t.Error("the same files were loaded twice")
	}
	c, err := a.Credential().Certificate(nil)
	if err != nil || c.Leaf != leaf.Cert && !c.Leaf.Equal(leaf.Cert) || c.PrivateKey == nil {
		t.Fatalf("Certificate: %v", err)
	}
	if a.CRLs().Len() != 1 || len(a.Anchors()) != 1 || a.Names().Check(leaf.Cert) != nil {
		t.Error("compiled parts")
	}
	if pool, err := a.Roots(); err != nil || pool == nil {
		t.Errorf("Roots: %v", err)
	}

	// A failure is remembered: a file named twice fails twice.
	bad := Files{CRLs: []string{filepath.Join(dir, "missing.crl")}}
	for range 2 {
		_, err := l.Load(bad)
		var le *LoadError
		if !errors.As(err, &le) || le.Field != "crl" || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("missing CRL: %v", err)
		}
	}
}

func TestReadFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Without O_NONBLOCK this would hang: nothing writes to the FIFO.
	for _, p := range []string{fifo, dir} {
		if _, err := ReadFile(p); !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReadFile(%s) = %v, want ErrNotRegular", p, err)
		}
	}
	big := make([]byte, 100<<10)
	f := certstest.WriteFile(t, dir, "big", big)
	if got, err := ReadFile(f); err != nil || !bytes.Equal(got, big) {
		t.Errorf("ReadFile: %d bytes, %v", len(got), err)
	}
}

func TestLoaderTPMKey(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, certstest.ECDSAP256, "root")
	leaf := ca.Leaf(t, certstest.ECDSAP256)
	other := ca.Leaf(t, certstest.ECDSAP256)
	cert := certstest.WriteFile(t, dir, "cert.pem", certstest.CertPEM(leaf.Cert))
	blob := pem.EncodeToMemory(&pem.Block{Type: TSS2PEMType, Bytes: []byte{0x30, 0}})
	key := certstest.WriteFile(t, dir, "tpm.pem", blob)
	f := Files{Certificate: cert, PrivateKey: key}

	// Matched against the certificate at load, without a TPM.
	l := Loader{TPMPublicKey: func([]byte) (crypto.PublicKey, error) { return other.Key.Public(), nil }}
	if _, err := l.Load(f); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("mismatching TPM key: %v", err)
	}
	l = Loader{TPMPublicKey: func(p []byte) (crypto.PublicKey, error) { return leaf.Key.Public(), nil }}
	c, err := l.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	cr := c.Credential()
	if !cr.IsTPM() {
		t.Fatal("not a TPM key")
	}
	if _, err := cr.Certificate(nil); !errors.Is(err, ErrNoKeyOpener) {
		t.Errorf("without an opener: %v", err)
	}
	// Opened for each use, from the PEM read at load.
	for range 2 {
		var got []byte
		fs := &fakeSigner{Signer: leaf.Key}
		tc, err := cr.Certificate(func(p []byte) (crypto.Signer, error) { got = p; return fs, nil })
		if err != nil || !bytes.Equal(got, blob) || tc.PrivateKey != fs {
			t.Fatalf("Certificate: %v", err)
		}
		if CloseKey(tc); !fs.closed {
			t.Error("not closed")
		}
	}
	fs := &fakeSigner{Signer: other.Key}
	if _, err := cr.Certificate(func([]byte) (crypto.Signer, error) { return fs, nil }); !errors.Is(err, ErrKeyMismatch) || !fs.closed {
		t.Errorf("mismatching key at use: %v, closed %v", err, fs.closed)
	}
}
