package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Files names the files and name patterns of one x509 configuration, as a
// policy gives them.
type Files struct {
	// TrustAnchors are files or directories of CA certificates; none
	// means the system trust store.
	TrustAnchors []string
	// CRLs are PEM or DER revocation lists.
	CRLs []string
	// Certificate is a chain, leaf first; "" means none. PrivateKey ""
	// means the key is in Certificate.
	Certificate, PrivateKey string
	// AllowedNames are ParseNamePattern entries; none allows every name.
	AllowedNames []string
}

// A LoadError says which part of a configuration failed to load.
type LoadError struct {
	// Field is "trust_anchors", "crl", "certificate", "private_key" or
	// "allowed_names", as the policy file names them.
	Field string
	Path  string // the file, if one is to blame
	Err   error
}

func (e *LoadError) Error() string { return e.Err.Error() }
func (e *LoadError) Unwrap() error { return e.Err }

// A Loader loads x509 configurations for one policy generation, so that
// nothing is read or parsed per handshake: each file is read once however
// many configurations name it, and configurations naming the same files
// share what was parsed. A Loader is not safe for concurrent use; the
// Compiled values it returns are, and they never change.
type Loader struct {
	// TPMPublicKey, if set, returns the public key of a TPM key file
	// ("TSS2 PRIVATE KEY" PEM) without a TPM, so that the key is matched
	// against its certificate at load; without it a mismatch shows at
	// the first handshake.
	TPMPublicKey func(tss2PEM []byte) (crypto.PublicKey, error)

	system  func() (*x509.CertPool, error)
	anchors map[string]result[*anchorSet]
	crls    map[string]result[*CRLSet]
	creds   map[[2]string]result[*Credential]
	names   map[string]result[*NamePolicy]
}

// result is a cached load, failed or not: a file that failed once fails
// every configuration that names it.
type result[T any] struct {
	v   T
	err error
}

func cached[K comparable, T any](m map[K]result[T], k K, load func() (T, error)) (T, error) {
	r, ok := m[k]
	if !ok {
		r.v, r.err = load()
		m[k] = r
	}
	return r.v, r.err
}

type anchorSet struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// Compiled is one x509 configuration, loaded: trust anchors and CRLs
// parsed, name patterns compiled, certificate and private key read. It is
// immutable and safe for concurrent use.
type Compiled struct {
	anchors *anchorSet // nil: the system store
	system  func() (*x509.CertPool, error)
	crls    *CRLSet
	names   *NamePolicy
	cred    *Credential
}

// A Credential is a certificate chain with its private key, loaded from
// files. A TPM key is kept as its PEM file and opened for each use.
type Credential struct {
	CertFile, KeyFile string
	cert              tls.Certificate // PrivateKey nil for a TPM key
	tpmPEM            []byte
}

// Load loads a configuration. Every failure is a *LoadError.
func (l *Loader) Load(f Files) (*Compiled, error) {
	if l.anchors == nil {
		l.anchors = make(map[string]result[*anchorSet])
		l.crls = make(map[string]result[*CRLSet])
		l.creds = make(map[[2]string]result[*Credential])
		l.names = make(map[string]result[*NamePolicy])
		// The system store is loaded at the first handshake that needs
		// it, once per generation: hosts that serve only PSKs never pay
		// for it.
		l.system = sync.OnceValues(func() (*x509.CertPool, error) {
			p, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("certs: system trust anchors: %w", err)
			}
			return p, nil
		})
	}
	c := &Compiled{system: l.system}
	var errs []error
	var err error
	if len(f.TrustAnchors) > 0 {
		if c.anchors, err = cached(l.anchors, listKey(f.TrustAnchors), func() (*anchorSet, error) {
			return loadAnchors(f.TrustAnchors)
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(f.CRLs) > 0 {
		if c.crls, err = cached(l.crls, listKey(f.CRLs), func() (*CRLSet, error) {
			return loadCRLFiles(f.CRLs)
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(f.AllowedNames) > 0 {
		if c.names, err = cached(l.names, listKey(f.AllowedNames), func() (*NamePolicy, error) {
			n, err := ParseNamePolicy(f.AllowedNames...)
			if err != nil {
				return nil, &LoadError{Field: "allowed_names", Err: err}
			}
			return n, nil
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if f.Certificate != "" {
		if c.cred, err = cached(l.creds, [2]string{f.Certificate, f.PrivateKey}, func() (*Credential, error) {
			return l.loadCredential(f.Certificate, f.PrivateKey)
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func listKey(l []string) string { return strings.Join(l, "\x00") }

// Roots returns the trust anchors: the configured ones, or the system
// store (loaded at the first call of its generation).
func (c *Compiled) Roots() (*x509.CertPool, error) {
	if c.anchors != nil {
		return c.anchors.pool, nil
	}
	return c.system()
}

// Anchors returns the configured trust anchor certificates; nil means the
// system store.
func (c *Compiled) Anchors() []*x509.Certificate {
	if c.anchors == nil {
		return nil
	}
	return c.anchors.certs
}

// CRLs returns the revocation lists (nil: none).
func (c *Compiled) CRLs() *CRLSet { return c.crls }

// Names returns the allow-list (nil: every name).
func (c *Compiled) Names() *NamePolicy { return c.names }

// Credential returns this side's certificate and key; nil if none is
// configured.
func (c *Compiled) Credential() *Credential { return c.cred }

// Chain returns the certificate chain, leaf first.
func (cr *Credential) Chain() []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(cr.cert.Certificate))
	out = append(out, cr.cert.Leaf)
	for _, der := range cr.cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// IsTPM reports whether the private key is a TPM key.
func (cr *Credential) IsTPM() bool { return cr.tpmPEM != nil }

// Certificate returns the credential for one handshake. A TPM key is
// opened with opener (ErrNoKeyOpener without one) and must be released
// with CloseKey after the handshake; a software key is shared and
// CloseKey does nothing to it.
func (cr *Credential) Certificate(opener KeyOpener) (tls.Certificate, error) {
	if cr.tpmPEM == nil {
		return cr.cert, nil
	}
	if opener == nil {
		return tls.Certificate{}, fmt.Errorf("certs: %s: %w", cr.KeyFile, ErrNoKeyOpener)
	}
	s, err := opener(cr.tpmPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %s: opening TPM key: %w", cr.KeyFile, err)
	}
	c := cr.cert
	c.PrivateKey = s
	if !publicKeysEqual(cr.cert.Leaf.PublicKey, s.Public()) {
		CloseKey(c)
		return tls.Certificate{}, fmt.Errorf("certs: %s: %w", cr.KeyFile, ErrKeyMismatch)
	}
	return c, nil
}

func (l *Loader) loadCredential(certFile, keyFile string) (*Credential, error) {
	certData, err := ReadFile(certFile)
	if err != nil {
		return nil, &LoadError{Field: "certificate", Path: certFile, Err: err}
	}
	chain, err := ParseCertificates(certData)
	if err != nil {
		return nil, &LoadError{Field: "certificate", Path: certFile, Err: fmt.Errorf("certs: %s: %w", certFile, err)}
	}
	if len(chain) > MaxChainLen {
		return nil, &LoadError{Field: "certificate", Path: certFile, Err: fmt.Errorf("certs: %s: %w", certFile, ErrChainTooLong)}
	}
	field := "private_key"
	keyData := certData
	if keyFile == "" || keyFile == certFile {
		keyFile, field = certFile, "certificate"
	} else if keyData, err = ReadFile(keyFile); err != nil {
		return nil, &LoadError{Field: field, Path: keyFile, Err: err}
	}
	// The file's bytes are not needed once parsed: zero them.
	defer clear(keyData)
	cr := &Credential{CertFile: certFile, KeyFile: keyFile}
	if tss2, ok := tpmKeyPEM(keyData); ok {
		cr.tpmPEM = tss2
		cr.cert = tls.Certificate{Leaf: chain[0]}
		for _, x := range chain {
			cr.cert.Certificate = append(cr.cert.Certificate, x.Raw)
		}
		if l.TPMPublicKey != nil {
			pub, err := l.TPMPublicKey(tss2)
			if err != nil {
				return nil, &LoadError{Field: field, Path: keyFile, Err: fmt.Errorf("certs: %s: %w", keyFile, err)}
			}
			if !publicKeysEqual(chain[0].PublicKey, pub) {
				return nil, &LoadError{Field: field, Path: keyFile, Err: fmt.Errorf("certs: %s: %w %s", keyFile, ErrKeyMismatch, certFile)}
			}
		}
		return cr, nil
	}
	key, err := parseKey(keyData, nil)
	if err != nil {
		return nil, &LoadError{Field: field, Path: keyFile, Err: fmt.Errorf("certs: %s: %w", keyFile, err)}
	}
	c, err := assemble(chain, key)
	if err != nil {
		return nil, &LoadError{Field: field, Path: keyFile, Err: fmt.Errorf("certs: %s: %w %s", keyFile, err, certFile)}
	}
	cr.cert = c
	return cr, nil
}

// tpmKeyPEM returns the first TSS2 PRIVATE KEY block of data, re-encoded,
// if the first private key in data is one.
func tpmKeyPEM(data []byte) ([]byte, bool) {
	var out []byte
	_, err := parseKey(data, func(b []byte) (crypto.Signer, error) {
		out = b
		return nil, errTPMSeen
	})
	return out, errors.Is(err, errTPMSeen)
}

var errTPMSeen = errors.New("certs: TPM key")

func loadAnchors(paths []string) (*anchorSet, error) {
	a := &anchorSet{pool: x509.NewCertPool()}
	for _, path := range paths {
		files, err := expandDir(path)
		if err != nil {
			return nil, &LoadError{Field: "trust_anchors", Path: path, Err: err}
		}
		n := 0
		for _, f := range files {
			data, err := ReadFile(f)
			if err != nil {
				if f != path {
					continue // in a directory, what cannot be read is skipped as are non-certificates
				}
				return nil, &LoadError{Field: "trust_anchors", Path: f, Err: err}
			}
			certs, err := ParseCertificates(data)
			if err != nil {
				if f != path {
					continue // in a directory, files that are not certificates are skipped
				}
				return nil, &LoadError{Field: "trust_anchors", Path: f, Err: fmt.Errorf("certs: %s: %w", f, err)}
			}
			for _, c := range certs {
				a.pool.AddCert(c)
			}
			a.certs = append(a.certs, certs...)
			n += len(certs)
		}
		if n == 0 {
			return nil, &LoadError{Field: "trust_anchors", Path: path, Err: fmt.Errorf("certs: %s: %w", path, ErrNoCertificate)}
		}
	}
	return a, nil
}

func loadCRLFiles(files []string) (*CRLSet, error) {
	var all []*x509.RevocationList
	for _, f := range files {
		data, err := ReadFile(f)
		if err != nil {
			return nil, &LoadError{Field: "crl", Path: f, Err: err}
		}
		lists, err := ParseCRLs(data)
		if err != nil {
			return nil, &LoadError{Field: "crl", Path: f, Err: fmt.Errorf("certs: %s: %w", f, err)}
		}
		all = append(all, lists...)
	}
	return NewCRLSet(all...), nil
}

// ErrNotRegular: the daemon reads only regular files (a FIFO or a device
// would block or never end).
var ErrNotRegular = errors.New("not a regular file")

// maxFileSize bounds what ReadFile reads: certificate bundles are
// kilobytes; a CRL of a large CA a few megabytes.
const maxFileSize = 64 << 20

// ReadFile reads a regular file the policy names. It opens without
// blocking (O_NONBLOCK: a FIFO put in a certificate's place must not
// hang the daemon) and refuses anything that is not a regular file.
func ReadFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("certs: %s: %w (%v)", path, ErrNotRegular, fi.Mode().Type())
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("certs: %s: larger than %d bytes", path, maxFileSize)
	}
	buf := make([]byte, 0, fi.Size()+1)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return nil, fmt.Errorf("certs: reading %s: %w", path, err)
		}
		if len(buf) == cap(buf) {
			if len(buf) > maxFileSize {
				return nil, fmt.Errorf("certs: %s: larger than %d bytes", path, maxFileSize)
			}
			buf = append(buf, 0)[:len(buf)]
		}
	}
}
