// Package certstest makes throw-away PKIs for tests: CAs, intermediates,
// leaf certificates of every key type TLS 1.3 uses, CRLs, and PEM files.
//
// Everything is generated with crypto/x509 at run time; nothing is meant
// for production.
package certstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A KeyType names a key algorithm.
type KeyType int

// The key types tests use.
const (
	ECDSAP256 KeyType = iota
	ECDSAP384
	RSA2048
	Ed25519
)

func (k KeyType) String() string {
	switch k {
	case ECDSAP256:
		return "ECDSA-P256"
	case ECDSAP384:
		return "ECDSA-P384"
	case RSA2048:
		return "RSA-2048"
	case Ed25519:
		return "Ed25519"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// RSA key generation is slow; tests share a small pool.
var rsaPool struct {
	sync.Mutex
	keys []*rsa.PrivateKey
	next int
}

const rsaPoolSize = 3

// NewKey returns a fresh key of type kt (RSA keys come from a small
// per-process pool).
func NewKey(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kt {
	case ECDSAP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case RSA2048:
		rsaPool.Lock()
		defer rsaPool.Unlock()
		if len(rsaPool.keys) < rsaPoolSize {
			var rk *rsa.PrivateKey
			rk, err = rsa.GenerateKey(rand.Reader, 2048)
			if err == nil {
				rsaPool.keys = append(rsaPool.keys, rk)
			}
			k = rk
		} else {
			k = rsaPool.keys[rsaPool.next%rsaPoolSize]
			rsaPool.next++
		}
	default:
		t.Fatalf("certstest: unknown key type %v", kt)
	}
	if err != nil {
		t.Fatalf("certstest: generating %v key: %v", kt, err)
	}
	return k
}

var serial atomic.Int64

func nextSerial() *big.Int {
	return big.NewInt(time.Now().UnixNano()/1000 + serial.Add(1))
}

// A CA is a certificate authority: a root or an intermediate.
type CA struct {
	Cert   *x509.Certificate
	Key    crypto.Signer
	Parent *CA // nil for a root
}

// NewCA makes a self-signed root of key type kt.
func NewCA(t testing.TB, kt KeyType, name string) *CA {
	t.Helper()
	return newCA(t, kt, name, nil)
}

// NewLongCA makes a self-signed root valid for a year, for tests that
// must not see certificates about to expire.
func NewLongCA(t testing.TB, kt KeyType, name string) *CA {
	t.Helper()
	ca := newCA(t, kt, name, nil)
	tmpl := *ca.Cert
	tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, ca.Key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("certstest: creating CA %q: %v", name, err)
	}
	ca.Cert = mustParse(t, der)
	return ca
}

// Intermediate makes a CA certified by ca.
func (ca *CA) Intermediate(t testing.TB, kt KeyType, name string) *CA {
	t.Helper()
	return newCA(t, kt, name, ca)
}

// newCA makes a CA signed by parent, or self-signed if parent is nil.
func newCA(t testing.TB, kt KeyType, name string, parent *CA) *CA {
	t.Helper()
	key := NewKey(t, kt)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tlshd-go test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatalf("certstest: creating CA %q: %v", name, err)
	}
	return &CA{Cert: mustParse(t, der), Key: key, Parent: parent}
}

// Chain is ca's certificate followed by its parents up to, but not
// including, the root.
func (ca *CA) Chain() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		out = append(out, c.Cert)
	}
	return out
}

// Pool is a pool holding the root of ca.
func (ca *CA) Pool() *x509.CertPool {
	root := ca
	for root.Parent != nil {
		root = root.Parent
	}
	p := x509.NewCertPool()
	p.AddCert(root.Cert)
	return p
}

// A LeafOption adjusts a leaf template before it is signed.
type LeafOption func(*x509.Certificate)

// DNS sets the DNS SANs.
func DNS(names ...string) LeafOption {
	return func(c *x509.Certificate) { c.DNSNames = names }
}

// IPs sets the IP SANs.
func IPs(ips ...string) LeafOption {
	return func(c *x509.Certificate) {
		c.IPAddresses = nil
		for _, s := range ips {
			c.IPAddresses = append(c.IPAddresses, net.ParseIP(s))
		}
	}
}

// URIs sets the URI SANs (which must parse).
func URIs(uris ...string) LeafOption {
	return func(c *x509.Certificate) {
		c.URIs = nil
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				panic(err)
			}
			c.URIs = append(c.URIs, u)
		}
	}
}

// Emails sets the email SANs.
func Emails(addrs ...string) LeafOption {
	return func(c *x509.Certificate) { c.EmailAddresses = addrs }
}

// CN sets the subject common name.
func CN(cn string) LeafOption {
	return func(c *x509.Certificate) { c.Subject.CommonName = cn }
}

// EKU sets the extended key usages; none means no EKU extension.
func EKU(ekus ...x509.ExtKeyUsage) LeafOption {
	return func(c *x509.Certificate) { c.ExtKeyUsage = ekus }
}

// Validity sets the validity period.
func Validity(notBefore, notAfter time.Time) LeafOption {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = notBefore, notAfter }
}

// Expired makes a certificate that expired an hour ago.
func Expired() LeafOption {
	return Validity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
}

// A Leaf is an end-entity credential.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	CA   *CA
}

// Leaf issues an end-entity certificate of key type kt. By default it is
// valid now, has the SANs "localhost" and 127.0.0.1 and ::1, and both
// serverAuth and clientAuth EKUs.
func (ca *CA) Leaf(t testing.TB, kt KeyType, opts ...LeafOption) *Leaf {
	t.Helper()
	key := NewKey(t, kt)
	return ca.LeafFor(t, key, opts...)
}

// LeafFor is Leaf for an existing key (for example a TPM-resident one).
func (ca *CA) LeafFor(t testing.TB, key crypto.Signer, opts ...LeafOption) *Leaf {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"tlshd-go test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if _, ok := key.Public().(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("certstest: creating leaf: %v", err)
	}
	return &Leaf{Cert: mustParse(t, der), Key: key, CA: ca}
}

// Chain is the leaf followed by its intermediates (not the root).
func (l *Leaf) Chain() []*x509.Certificate {
	return append([]*x509.Certificate{l.Cert}, l.CA.Chain()...)
}

// TLS is the leaf as a tls.Certificate with its intermediates.
func (l *Leaf) TLS() tls.Certificate {
	c := tls.Certificate{PrivateKey: l.Key, Leaf: l.Cert}
	for _, x := range l.Chain() {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// CRL makes a CRL signed by ca that revokes the given certificates.
func (ca *CA) CRL(t testing.TB, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     nextSerial(),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(24 * time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatalf("certstest: creating CRL: %v", err)
	}
	return der
}

// CertPEM encodes certificates as PEM.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as a PKCS #8 "PRIVATE KEY" block.
func KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("certstest: marshalling key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CRLPEM encodes a DER CRL as PEM.
func CRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// WriteFile writes data to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("certstest: %v", err)
	}
	return p
}

// Files are a leaf's credentials written as PEM.
type Files struct {
	Cert, Key, CA string // chain (leaf first), PKCS #8 key, root
}

// WriteFiles writes the leaf chain, its key and the root CA to dir, with
// names starting with prefix.
func (l *Leaf) WriteFiles(t testing.TB, dir, prefix string) Files {
	t.Helper()
	root := l.CA
	for root.Parent != nil {
		root = root.Parent
	}
	return Files{
		Cert: WriteFile(t, dir, prefix+"-cert.pem", CertPEM(l.Chain()...)),
		Key:  WriteFile(t, dir, prefix+"-key.pem", KeyPEM(t, l.Key)),
		CA:   WriteFile(t, dir, prefix+"-ca.pem", CertPEM(root.Cert)),
	}
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certstest: parsing generated certificate: %v", err)
	}
	return c
}
