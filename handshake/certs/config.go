package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ErrNoPeerName: a client handshake needs the server's name or address to
// verify its certificate.
var ErrNoPeerName = errors.New("certs: no peer name or address to verify the server against")

// ClientOptions configure the client side.
type ClientOptions struct {
	// Certificate is presented when the server asks for one (NFS
	// xprtsec=mtls); nil presents none (xprtsec=tls). It is sent even if
	// its issuer is not among the server's certificate_authorities.
	Certificate *tls.Certificate

	// Roots are the trust anchors for the server's chain; nil means the
	// system pool.
	Roots *x509.CertPool

	// PeerName is the kernel's PEERNAME: a DNS name, sent as SNI and
	// matched against the certificate's DNS SANs, or an IP address,
	// matched against its IP SANs (no SNI is sent). When empty, PeerAddr
	// is used as an IP name.
	PeerName string
	PeerAddr netip.Addr
	// ReverseName, used only when PeerName is empty or an address (NFS
	// mounts by address send the address as PEERNAME), is the name
	// reverse DNS gave for that address (tlshd's fallback): it is sent as
	// SNI, and the certificate must be valid for it or for the address.
	ReverseName string

	// CRLs revoke certificates of the server's chain.
	CRLs *CRLSet

	// RequireServerAuthEKU makes an EKU extension without serverAuth
	// (or anyExtendedKeyUsage) fail verification. ktls-utils checks no
	// key purposes, so the default does not either.
	RequireServerAuthEKU bool

	// AllowedNames, if non-nil, additionally requires one of the
	// server certificate's names to be on this list.
	AllowedNames *NamePolicy

	// Time is the clock for validity checks; nil means time.Now.
	Time func() time.Time

	// SkipNameCheck verifies the server's chain but not that it is for
	// PeerName (which is still sent as SNI): for deployments that pin
	// the server through AllowedNames or a private CA instead.
	SkipNameCheck bool
}

// ClientAuth is the server's policy for client certificates.
type ClientAuth int

const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = iota
	// ClientAuthOptional asks for one and verifies it if sent; a
	// client without one is accepted (NFS xprtsec=tls). This is what
	// ktls-utils does.
	ClientAuthOptional
	// ClientAuthRequired fails the handshake (certificate_required)
	// without a verified client certificate.
	ClientAuthRequired
)

func (a ClientAuth) String() string {
	switch a {
	case ClientAuthNone:
		return "none"
	case ClientAuthOptional:
		return "optional"
	case ClientAuthRequired:
		return "required"
	}
	return fmt.Sprintf("ClientAuth(%d)", int(a))
}

// ParseClientAuth parses "none", "optional" or "required".
func ParseClientAuth(s string) (ClientAuth, error) {
	for a := ClientAuthNone; a <= ClientAuthRequired; a++ {
		if strings.EqualFold(strings.TrimSpace(s), a.String()) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("certs: unknown client authentication %q (none, optional, required)", s)
}

// ServerOptions configure the server side.
type ServerOptions struct {
	// Certificates are the server's credentials (at least one);
	// crypto/tls picks the first the client can verify.
	Certificates []tls.Certificate

	ClientAuth ClientAuth

	// Roots are the trust anchors for client chains; nil means the
	// system pool. A non-nil pool's subjects are sent as
	// certificate_authorities.
	Roots *x509.CertPool

	// RequireClientAuthEKU makes an EKU extension without clientAuth (or
	// anyExtendedKeyUsage) fail verification.
	RequireClientAuthEKU bool

	// AllowedNames, if non-nil, requires one of the client certificate's
	// names to be on this list. There is no other name check on clients.
	AllowedNames *NamePolicy

	// CRLs revoke certificates of the client's chain.
	CRLs *CRLSet

	// Time is the clock for validity checks; nil means time.Now.
	Time func() time.Time
}

// ClientConfig builds the tls.Config of a client handshake. Verification
// failures surface from stdtls.Client as a sent bad_certificate alert
// wrapping *tls.CertificateVerificationError (and the x509 error), or
// ErrRevoked, *NameNotAllowedError or ErrChainTooLong.
//
// Without RequireServerAuthEKU the chain is verified in VerifyConnection
// (crypto/tls always demands serverAuth), so the session's VerifiedChains
// stay empty; PeerCertificates are always filled.
func ClientConfig(o ClientOptions) (*tls.Config, error) {
	name, err := serverName(o.PeerName, o.PeerAddr)
	if err != nil {
		return nil, err
	}
	altName := ""
	if rn := strings.TrimSuffix(o.ReverseName, "."); rn != "" {
		if _, err := netip.ParseAddr(rn); err == nil {
			return nil, fmt.Errorf("certs: reverse DNS name %q is an address", rn)
		}
		if _, err := netip.ParseAddr(name); err == nil {
			name, altName = rn, name
		}
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: name,
		RootCAs:    o.Roots,
		Time:       o.Time,
	}
	if o.Certificate != nil {
		cert := *o.Certificate
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		}
	}
	v := &verifier{
		roots:   o.Roots,
		dnsName: name,
		altName: altName,
		usage:   x509.ExtKeyUsageAny,
		crls:    o.CRLs,
		names:   o.AllowedNames,
		now:     o.Time,
	}
	if o.SkipNameCheck {
		v.dnsName = ""
	}
	if o.SkipNameCheck {
		v.altName = ""
	}
	if o.RequireServerAuthEKU && !o.SkipNameCheck && altName == "" {
		// crypto/tls verifies with serverAuth and the name, and fills
		// ConnectionState.VerifiedChains.
		v.builtin = true
	} else if o.RequireServerAuthEKU {
		v.usage = x509.ExtKeyUsageServerAuth
		cfg.InsecureSkipVerify = true
	} else {
		// Verify without a key purpose ourselves.
		cfg.InsecureSkipVerify = true
	}
	cfg.VerifyConnection = v.verifyConnection
	return cfg, nil
}

// serverName picks the name to verify the server against: PEERNAME, else
// the peer's address. IP literals are canonicalised (brackets and zones
// dropped, IPv4-mapped addresses unmapped), so that crypto/tls sends no SNI
// and x509 matches IP SANs.
func serverName(peerName string, peerAddr netip.Addr) (string, error) {
	n := strings.TrimSuffix(strings.TrimSpace(peerName), ".")
	if n == "" {
		if !peerAddr.IsValid() {
			return "", ErrNoPeerName
		}
		return peerAddr.WithZone("").Unmap().String(), nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(n, "["), "]")
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i]
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String(), nil
	}
	return n, nil
}

// ServerConfig builds the tls.Config of a server handshake. As with
// ClientConfig, VerifiedChains are only filled with RequireClientAuthEKU
// (crypto/tls's verification always demands clientAuth). Failures
// surface from stdtls.Server as sent alerts: certificate_required without
// a required certificate; unknown_ca, certificate_expired or
// bad_certificate from crypto/tls's own verification (used when
// RequireClientAuthEKU is set); bad_certificate for everything checked in
// VerifyConnection (verification without a key purpose, ErrRevoked,
// *NameNotAllowedError, ErrChainTooLong).
func ServerConfig(o ServerOptions) (*tls.Config, error) {
	if len(o.Certificates) == 0 {
		return nil, fmt.Errorf("%w for the server", ErrNoCertificate)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: o.Certificates,
		Time:         o.Time,
	}
	if o.ClientAuth == ClientAuthNone {
		cfg.ClientAuth = tls.NoClientCert
		return cfg, nil
	}
	v := &verifier{
		roots: o.Roots,
		usage: x509.ExtKeyUsageAny,
		crls:  o.CRLs,
		names: o.AllowedNames,
		now:   o.Time,
	}
	cfg.ClientCAs = o.Roots // also advertised as certificate_authorities
	switch {
	case o.ClientAuth == ClientAuthOptional && o.RequireClientAuthEKU:
		cfg.ClientAuth, v.builtin = tls.VerifyClientCertIfGiven, true
	case o.ClientAuth == ClientAuthOptional:
		cfg.ClientAuth = tls.RequestClientCert
	case o.ClientAuth == ClientAuthRequired && o.RequireClientAuthEKU:
		cfg.ClientAuth, v.builtin = tls.RequireAndVerifyClientCert, true
	case o.ClientAuth == ClientAuthRequired:
		cfg.ClientAuth = tls.RequireAnyClientCert
	default:
		return nil, fmt.Errorf("certs: unknown client authentication %v", o.ClientAuth)
	}
	cfg.VerifyConnection = v.verifyConnection
	return cfg, nil
}

// verifier checks a peer's chain in VerifyConnection.
type verifier struct {
	// builtin: crypto/tls has verified the chain (with its fixed key
	// purpose) and ConnectionState.VerifiedChains holds the result.
	builtin bool
	roots   *x509.CertPool
	dnsName string           // client side: the server's name
	altName string           // or this one (its address, dnsName from reverse DNS)
	usage   x509.ExtKeyUsage // when not builtin
	crls    *CRLSet
	names   *NamePolicy
	now     func() time.Time
}

func (v *verifier) verifyConnection(cs tls.ConnectionState) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		// A server always sends a certificate; a client without one
		// was allowed by crypto/tls's ClientAuth policy.
		return nil
	}
	if len(certs) > MaxChainLen {
		return ErrChainTooLong
	}
	chains := cs.VerifiedChains
	if !v.builtin {
		opts := x509.VerifyOptions{
			Roots:         v.roots,
			Intermediates: x509.NewCertPool(),
			DNSName:       v.dnsName,
			KeyUsages:     []x509.ExtKeyUsage{v.usage},
		}
		if v.now != nil {
			opts.CurrentTime = v.now()
		}
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		var err error
		chains, err = certs[0].Verify(opts)
		var he x509.HostnameError
		if err != nil && v.altName != "" && errors.As(err, &he) {
			byName := err
			opts.DNSName = v.altName
			chains, err = certs[0].Verify(opts)
			if err != nil && errors.As(err, &he) {
				// Name both: an operator looks for the reverse-DNS
				// name, which the address's error alone would hide.
				err = fmt.Errorf("%w; nor for its address: %v", byName, err)
			}
		}
		if err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
		}
	}
	if err := v.crls.Check(chains); err != nil {
		return err
	}
	return v.names.Check(certs[0])
}
