package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
)

func derChain(l *certstest.Leaf) []byte {
	var out []byte
	for _, c := range l.Chain() {
		out = append(out, c.Raw...)
	}
	return out
}

func pkcs8(t *testing.T, k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func checkCert(t *testing.T, c tls.Certificate, l *certstest.Leaf) {
	t.Helper()
	want := l.Chain()
	if len(c.Certificate) != len(want) {
		t.Fatalf("chain of %d, want %d", len(c.Certificate), len(want))
	}
	for i := range want {
		if !bytes.Equal(c.Certificate[i], want[i].Raw) {
			t.Fatalf("certificate %d differs", i)
		}
	}
	if c.Leaf == nil || !c.Leaf.Equal(l.Cert) {
		t.Fatal("Leaf not set")
	}
	if !publicKeysEqual(c.PrivateKey.(crypto.Signer).Public(), l.Key.Public()) {
		t.Fatal("wrong key")
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, kt := range []certstest.KeyType{certstest.ECDSAP256, certstest.RSA2048, certstest.Ed25519, certstest.ECDSAP384} {
		t.Run(kt.String(), func(t *testing.T) {
			root := certstest.NewCA(t, kt, "root")
			inter := root.Intermediate(t, kt, "intermediate")
			leaf := inter.Leaf(t, kt)
			f := leaf.WriteFiles(t, dir, kt.String())
			c, err := LoadFiles(f.Cert, f.Key, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, leaf)

			// Combined file, key first.
			both := certstest.WriteFile(t, dir, kt.String()+"-both.pem",
				append(certstest.KeyPEM(t, leaf.Key), certstest.CertPEM(leaf.Chain()...)...))
			if c, err = LoadFiles(both, "", nil); err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, leaf)

			// DER chain and DER key.
			cd := certstest.WriteFile(t, dir, kt.String()+".der", derChain(leaf))
			kd := certstest.WriteFile(t, dir, kt.String()+"-key.der", pkcs8(t, leaf.Key))
			if c, err = LoadFiles(cd, kd, nil); err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, leaf)
		})
	}
}

func TestLoadFilesKeyForms(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, certstest.ECDSAP256, "root")
	rsaLeaf := ca.Leaf(t, certstest.RSA2048)
	ecLeaf := ca.Leaf(t, certstest.ECDSAP256)
	sec1, err := x509.MarshalECPrivateKey(ecLeaf.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	tests := []struct {
		name string
		leaf *certstest.Leaf
		key  []byte
	}{
		{"PKCS1", rsaLeaf, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaLeaf.Key.(*rsa.PrivateKey))})},
		{"SEC1 with parameters", ecLeaf, append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := certstest.WriteFile(t, dir, "c.pem", certstest.CertPEM(tt.leaf.Chain()...))
			kf := certstest.WriteFile(t, dir, "k.pem", tt.key)
			c, err := LoadFiles(cf, kf, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, tt.leaf)
		})
	}
}

func TestLoadFilesErrors(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, certstest.ECDSAP256, "root")
	leaf := ca.Leaf(t, certstest.ECDSAP256)
	other := ca.Leaf(t, certstest.ECDSAP256)
	cert := certstest.WriteFile(t, dir, "cert.pem", certstest.CertPEM(leaf.Cert))
	key := certstest.WriteFile(t, dir, "key.pem", certstest.KeyPEM(t, leaf.Key))
	otherKey := certstest.WriteFile(t, dir, "other.pem", certstest.KeyPEM(t, other.Key))
	var long []*x509.Certificate
	for range MaxChainLen + 1 {
		long = append(long, leaf.Cert)
	}
	longChain := certstest.WriteFile(t, dir, "long.pem", certstest.CertPEM(long...))
	encrypted := certstest.WriteFile(t, dir, "enc.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))
	legacyEnc := certstest.WriteFile(t, dir, "legacy.pem", pem.EncodeToMemory(&pem.Block{
		Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}))
	tss2 := certstest.WriteFile(t, dir, "tpm.pem", pem.EncodeToMemory(&pem.Block{Type: TSS2PEMType, Bytes: []byte{1, 2, 3}}))
	empty := certstest.WriteFile(t, dir, "empty.pem", []byte("-----BEGIN FOO-----\n-----END FOO-----\n"))

	tests := []struct {
		name      string
		cert, key string
		want      error
	}{
		{"mismatch", cert, otherKey, ErrKeyMismatch},
		{"too long", longChain, key, ErrChainTooLong},
		{"encrypted", cert, encrypted, ErrEncryptedKey},
		{"legacy encrypted", cert, legacyEnc, ErrEncryptedKey},
		{"TPM key without TPM", cert, tss2, ErrNoKeyOpener},
		{"no key in file", cert, "", ErrNoKey},
		{"no certificate", empty, key, ErrNoCertificate},
		{"missing file", filepath.Join(dir, "nope"), key, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFiles(tt.cert, tt.key, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// fakeSigner is a software key standing in for a TPM key.
type fakeSigner struct {
	crypto.Signer
	closed bool
}

func (f *fakeSigner) Close() error { f.closed = true; return nil }

func TestLoadFilesTPMKey(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, certstest.ECDSAP256, "root")
	leaf := ca.Leaf(t, certstest.ECDSAP256)
	other := ca.Leaf(t, certstest.ECDSAP256)
	cert := certstest.WriteFile(t, dir, "cert.pem", certstest.CertPEM(leaf.Cert))
	blob := pem.EncodeToMemory(&pem.Block{Type: TSS2PEMType, Bytes: []byte{0x30, 0}})
	key := certstest.WriteFile(t, dir, "tpm.pem", blob)

	var got []byte
	fs := &fakeSigner{Signer: leaf.Key}
	c, err := LoadFiles(cert, key, func(p []byte) (crypto.Signer, error) {
		got = p
		return fs, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatalf("opener got %q", got)
	}
	if c.PrivateKey != fs {
		t.Fatal("certificate does not use the opener's signer")
	}
	if err := CloseKey(c); err != nil || !fs.closed {
		t.Fatal("CloseKey did not close the signer")
	}

	// A mismatching TPM key is closed again.
	fs2 := &fakeSigner{Signer: other.Key}
	if _, err := LoadFiles(cert, key, func([]byte) (crypto.Signer, error) { return fs2, nil }); !errors.Is(err, ErrKeyMismatch) || !fs2.closed {
		t.Fatalf("err = %v, closed = %v", err, fs2.closed)
	}

	errTPM := errors.New("no TPM here")
	if _, err := LoadFiles(cert, key, func([]byte) (crypto.Signer, error) { return nil, errTPM }); !errors.Is(err, errTPM) {
		t.Fatalf("err = %v", err)
	}
}

func TestFromDER(t *testing.T) {
	root := certstest.NewCA(t, certstest.ECDSAP256, "root")
	inter := root.Intermediate(t, certstest.ECDSAP256, "intermediate")
	ec := inter.Leaf(t, certstest.ECDSAP256)
	rsaLeaf := root.Leaf(t, certstest.RSA2048)
	sec1, _ := x509.MarshalECPrivateKey(ec.Key.(*ecdsa.PrivateKey))

	for _, tt := range []struct {
		name      string
		leaf      *certstest.Leaf
		cert, key []byte
	}{
		{"PKCS8 chain", ec, derChain(ec), pkcs8(t, ec.Key)},
		{"SEC1", ec, derChain(ec), sec1},
		{"PKCS1", rsaLeaf, rsaLeaf.Cert.Raw, x509.MarshalPKCS1PrivateKey(rsaLeaf.Key.(*rsa.PrivateKey))},
		{"PEM", ec, certstest.CertPEM(ec.Chain()...), certstest.KeyPEM(t, ec.Key)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromDER(tt.cert, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, tt.leaf)
		})
	}
	if _, err := FromDER(append(ec.Cert.Raw, 0), pkcs8(t, ec.Key)); err == nil {
		t.Error("trailing byte accepted")
	}
	if _, err := FromDER(ec.Cert.Raw, []byte{0x30, 0}); !errors.Is(err, ErrNoKey) {
		t.Errorf("bad key: %v", err)
	}
	if _, err := FromDER(nil, pkcs8(t, ec.Key)); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("no certificate: %v", err)
	}
}

func TestLoadRoots(t *testing.T) {
	dir := t.TempDir()
	a := certstest.NewCA(t, certstest.ECDSAP256, "A")
	b := certstest.NewCA(t, certstest.ECDSAP256, "B")
	fa := certstest.WriteFile(t, dir, "a.pem", certstest.CertPEM(a.Cert))
	fb := certstest.WriteFile(t, dir, "b.der", b.Cert.Raw)
	certstest.WriteFile(t, dir, "README", []byte("not a certificate"))
	check := func(p *x509.CertPool, want ...*certstest.CA) {
		t.Helper()
		if !p.Equal(poolOf(want...)) {
			t.Errorf("pool does not hold exactly the %d expected roots", len(want))
		}
	}
	p, err := LoadRoots(fa, fb)
	if err != nil {
		t.Fatal(err)
	}
	check(p, a, b)
	if p, err = LoadRoots(dir); err != nil {
		t.Fatal(err)
	}
	check(p, a, b)
	if _, err := LoadRoots(filepath.Join(dir, "README")); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("err = %v", err)
	}
	if _, err := LoadRoots(); err != nil {
		t.Errorf("system pool: %v", err)
	}
}

func poolOf(cas ...*certstest.CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c.Cert)
	}
	return p
}

func TestCRLs(t *testing.T) {
	dir := t.TempDir()
	root := certstest.NewCA(t, certstest.ECDSAP256, "root")
	inter := root.Intermediate(t, certstest.ECDSAP256, "intermediate")
	good := inter.Leaf(t, certstest.ECDSAP256)
	bad := inter.Leaf(t, certstest.ECDSAP256)
	interCRL := inter.CRL(t, bad.Cert)
	rootCRL := root.CRL(t, inter.Cert)

	pemFile := certstest.WriteFile(t, dir, "inter.crl.pem", certstest.CRLPEM(interCRL))
	derFile := certstest.WriteFile(t, dir, "root.crl", rootCRL)
	bothDER := certstest.WriteFile(t, dir, "both.crl", append(append([]byte(nil), interCRL...), rootCRL...))

	chain := func(l *certstest.Leaf) [][]*x509.Certificate {
		return [][]*x509.Certificate{{l.Cert, inter.Cert, root.Cert}}
	}
	s, err := LoadCRLs(pemFile)
	if err != nil || s.Len() != 1 {
		t.Fatal(err)
	}
	if err := s.Check(chain(good)); err != nil {
		t.Errorf("good certificate: %v", err)
	}
	err = s.Check(chain(bad))
	var re *RevokedError
	if !errors.Is(err, ErrRevoked) || !errors.As(err, &re) || re.Serial.Cmp(bad.Cert.SerialNumber) != 0 {
		t.Errorf("revoked certificate: %v", err)
	}
	// The root's CRL revokes the intermediate, and so every leaf.
	if s, err = LoadCRLs(derFile); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(chain(good)); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked intermediate: %v", err)
	}
	if s, err = LoadCRLs(bothDER); err != nil || s.Len() != 2 {
		t.Fatalf("%v, %d CRLs", err, s.Len())
	}

	// A CRL with the right issuer name but the wrong key is ignored.
	impostor := &certstest.CA{Cert: inter.Cert, Key: certstest.NewKey(t, certstest.ECDSAP256)}
	fake, err := x509.ParseRevocationList(impostorCRL(t, impostor, good.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if err := NewCRLSet(fake).Check(chain(good)); err != nil {
		t.Errorf("forged CRL honoured: %v", err)
	}
	var nilSet *CRLSet
	if nilSet.Check(chain(bad)) != nil || nilSet.Len() != 0 {
		t.Error("nil set")
	}
	if _, err := ParseCRLs([]byte("junk")); err == nil {
		t.Error("junk parsed")
	}
}

// impostorCRL signs a CRL in the name of ca.Cert with ca.Key, which does
// not belong to it.
func impostorCRL(t *testing.T, ca *certstest.CA, revoked *x509.Certificate) []byte {
	t.Helper()
	// x509.CreateRevocationList checks that the key matches the issuer,
	// so sign with a self-made issuer certificate of the same name.
	self := certstest.NewCA(t, certstest.ECDSAP256, ca.Cert.Subject.CommonName)
	tmpl := *self.Cert
	tmpl.Subject = ca.Cert.Subject
	tmpl.RawSubject = ca.Cert.RawSubject
	tmpl.PublicKey = self.Key.Public()
	fakeIssuer := &certstest.CA{Cert: &tmpl, Key: self.Key}
	return fakeIssuer.CRL(t, revoked)
}

func FuzzSplitDER(f *testing.F) {
	f.Add([]byte{0x30, 0x00, 0x30, 0x01, 0x00})
	f.Add([]byte{0x30, 0x81, 0x01, 0x00})
	f.Add([]byte{0x31, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := SplitDER(data)
		if err != nil {
			return
		}
		if joined := bytes.Join(parts, nil); !bytes.Equal(joined, data) {
			t.Fatalf("parts do not add up to the input")
		}
		for _, p := range parts {
			if len(p) == 0 || p[0] != 0x30 {
				t.Fatalf("part %x is not a SEQUENCE", p)
			}
		}
	})
}

func FuzzParseCertificates(f *testing.F) {
	ca := certstest.NewCA(f, certstest.ECDSAP256, "fuzz")
	f.Add(certstest.CertPEM(ca.Cert))
	f.Add(ca.Cert.Raw)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		ParseCRLs(data)
		parseKey(data, func([]byte) (crypto.Signer, error) { return nil, errors.New("no") })
	})
}

func TestSplitDERErrors(t *testing.T) {
	for _, in := range [][]byte{{0x30}, {0x30, 0x05, 0x00}, {0x02, 0x01, 0x00}, {0x30, 0x00, 0xff}} {
		if _, err := SplitDER(in); err == nil || !strings.HasPrefix(err.Error(), "certs:") {
			t.Errorf("SplitDER(%x) = %v", in, err)
		}
	}
}
