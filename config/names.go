package config

import (
	"crypto/x509"

	"github.com/tlshd-go/tlshd-go/handshake/certs"
)

// A NamePattern is one allow_names entry; certs defines the syntax and
// the matching, so the policy checks exactly what the handshake enforces.
type NamePattern = certs.NamePattern

// ParseNamePattern parses an allowed_names entry (see certs.ParseNamePattern).
func ParseNamePattern(s string) (NamePattern, error) { return certs.ParseNamePattern(s) }

// AllowedNames is an allow-list of peer certificate names; empty allows
// every certificate that verifies.
type AllowedNames []NamePattern

// Allows reports whether one of cert's names is on the list.
func (a AllowedNames) Allows(cert *x509.Certificate) bool {
	if len(a) == 0 {
		return true
	}
	if cert == nil {
		return false
	}
	for _, p := range a {
		if p.Matches(cert) {
			return true
		}
	}
	return false
}

// Strings returns the entries in their canonical form, which
// certs.ParseNamePolicy takes.
func (a AllowedNames) Strings() []string {
	out := make([]string, len(a))
	for i, p := range a {
		out[i] = p.String()
	}
	return out
}
