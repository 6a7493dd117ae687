package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"
)

// ErrRevoked is matched (errors.Is) by every *RevokedError.
var ErrRevoked = errors.New("certs: certificate revoked")

// A RevokedError names a revoked certificate in a peer's chain.
type RevokedError struct {
	Subject string
	Serial  *big.Int
	Issuer  string
	At      time.Time // revocation time from the CRL
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("certs: certificate %q (serial %s, issuer %q) revoked at %s",
		e.Subject, e.Serial, e.Issuer, e.At.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrRevoked) true.
func (e *RevokedError) Unwrap() error { return ErrRevoked }

// A CRLSet holds certificate revocation lists and checks verified chains
// against them. A CRL applies to a certificate when the CRL's issuer is the
// certificate's issuer and the CRL's signature verifies with the issuing
// certificate in the chain. CRLs past their NextUpdate still apply (a
// stale list is better than none; revocations are not undone). Safe for
// concurrent use.
type CRLSet struct {
	byIssuer map[string][]*crl // by raw issuer name
	lists    []*x509.RevocationList

	mu       sync.Mutex
	verified map[sigKey]bool // CRL signature checks already done
}

type crl struct {
	list    *x509.RevocationList
	revoked map[string]time.Time // serial (decimal) → revocation time
}

type sigKey struct {
	crl    *crl
	issuer [sha256.Size]byte // of the issuing certificate
}

// NewCRLSet builds a set from parsed CRLs.
func NewCRLSet(lists ...*x509.RevocationList) *CRLSet {
	s := &CRLSet{byIssuer: make(map[string][]*crl), verified: make(map[sigKey]bool), lists: lists}
	for _, l := range lists {
		c := &crl{list: l, revoked: make(map[string]time.Time, len(l.RevokedCertificateEntries))}
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber != nil {
				c.revoked[e.SerialNumber.String()] = e.RevocationTime
			}
		}
		s.byIssuer[string(l.RawIssuer)] = append(s.byIssuer[string(l.RawIssuer)], c)
	}
	return s
}

// Len is the number of CRLs in the set.
func (s *CRLSet) Len() int {
	if s == nil {
		return 0
	}
	n := 0
	for _, l := range s.byIssuer {
		n += len(l)
	}
	return n
}

// Lists returns the set's CRLs in the order given. They are shared and
// must not be modified.
func (s *CRLSet) Lists() []*x509.RevocationList {
	if s == nil {
		return nil
	}
	return s.lists
}

// Check returns a *RevokedError if any certificate of any chain (other
// than the chain's trust anchor) is revoked by an applicable CRL. A nil
// set revokes nothing.
func (s *CRLSet) Check(chains [][]*x509.Certificate) error {
	if s == nil || len(s.byIssuer) == 0 {
		return nil
	}
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			if err := s.checkOne(chain[i], chain[i+1]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *CRLSet) checkOne(cert, issuer *x509.Certificate) error {
	for _, c := range s.byIssuer[string(cert.RawIssuer)] {
		at, ok := c.revoked[cert.SerialNumber.String()]
		if !ok || !s.signedBy(c, issuer) {
			continue
		}
		return &RevokedError{
			Subject: cert.Subject.String(),
			Serial:  cert.SerialNumber,
			Issuer:  issuer.Subject.String(),
			At:      at,
		}
	}
	return nil
}

func (s *CRLSet) signedBy(c *crl, issuer *x509.Certificate) bool {
	k := sigKey{crl: c, issuer: sha256.Sum256(issuer.Raw)}
	s.mu.Lock()
	ok, done := s.verified[k]
	s.mu.Unlock()
	if done {
		return ok
	}
	ok = c.list.CheckSignatureFrom(issuer) == nil
	s.mu.Lock()
	s.verified[k] = ok
	s.mu.Unlock()
	return ok
}

// ParseCRLs parses CRLs from PEM ("X509 CRL" blocks) or DER (one CRL or
// several concatenated).
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	ders, err := derBlocks(data, "X509 CRL")
	if err != nil {
		return nil, err
	}
	if len(ders) == 0 {
		return nil, errors.New("certs: no CRL")
	}
	out := make([]*x509.RevocationList, 0, len(ders))
	for i, der := range ders {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("certs: CRL %d: %w", i+1, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// LoadCRLs reads CRL files (PEM or DER) into a set. No files gives an
// empty set.
func LoadCRLs(files ...string) (*CRLSet, error) {
	var all []*x509.RevocationList
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("certs: reading CRL: %w", err)
		}
		lists, err := ParseCRLs(data)
		if err != nil {
			return nil, fmt.Errorf("certs: %s: %w", f, err)
		}
		all = append(all, lists...)
	}
	return NewCRLSet(all...), nil
}
