package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
)

// Flags are credential settings as the connect and serve commands take
// them on the command line. Empty values mean "not given".
type Flags struct {
	CertFile string // PEM chain, leaf first
	KeyFile  string // PEM key (PKCS #8, PKCS #1, SEC1 or TSS2); default: in CertFile
	CAFile   string // PEM trust anchors (file or directory); default: the system pool
	CRLFiles []string

	// ServerName (client) is the name the server must prove, as the
	// kernel's PEERNAME would be; an IP address checks IP SANs.
	ServerName string

	// RequireClientCert (server) makes a verified client certificate
	// mandatory; otherwise one is requested and verified if sent.
	RequireClientCert bool

	// AllowedNames is an optional peer-name allow-list (see
	// ParseNamePattern).
	AllowedNames []string

	// KeyOpener opens TSS2 (TPM) key files; nil if no TPM is configured.
	KeyOpener KeyOpener
}

// ClientConfig builds a client tls.Config: a client certificate only if
// CertFile is set; if ServerName is empty, peerAddr (if valid) is the name
// verified. Close the certificate's key with CloseKey when done if it may
// be a TPM key.
func (f Flags) ClientConfig(peerAddr netip.Addr) (*tls.Config, error) {
	if f.CertFile == "" && f.KeyFile != "" {
		return nil, fmt.Errorf("certs: a key file without a certificate file")
	}
	o := ClientOptions{PeerName: f.ServerName, PeerAddr: peerAddr}
	var err error
	if o.Roots, o.CRLs, o.AllowedNames, err = f.trust(); err != nil {
		return nil, err
	}
	if _, err := serverName(o.PeerName, o.PeerAddr); err != nil {
		return nil, err
	}
	if f.CertFile != "" {
		c, err := LoadFiles(f.CertFile, f.KeyFile, f.KeyOpener)
		if err != nil {
			return nil, err
		}
		o.Certificate = &c
	}
	return ClientConfig(o)
}

// ServerConfig builds a server tls.Config; CertFile is required.
func (f Flags) ServerConfig() (*tls.Config, error) {
	if f.CertFile == "" {
		return nil, fmt.Errorf("%w: the server needs a certificate file", ErrNoCertificate)
	}
	o := ServerOptions{ClientAuth: ClientAuthOptional}
	if f.RequireClientCert {
		o.ClientAuth = ClientAuthRequired
	}
	var err error
	if o.Roots, o.CRLs, o.AllowedNames, err = f.trust(); err != nil {
		return nil, err
	}
	c, err := LoadFiles(f.CertFile, f.KeyFile, f.KeyOpener)
	if err != nil {
		return nil, err
	}
	o.Certificates = []tls.Certificate{c}
	return ServerConfig(o)
}

// trust loads what verifies the peer, the same for both roles.
func (f Flags) trust() (roots *x509.CertPool, crls *CRLSet, names *NamePolicy, err error) {
	if f.CAFile == "" {
		roots, err = LoadRoots()
	} else {
		roots, err = LoadRoots(f.CAFile)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if crls, err = LoadCRLs(f.CRLFiles...); err != nil {
		return nil, nil, nil, err
	}
	if names, err = ParseNamePolicy(f.AllowedNames...); err != nil {
		return nil, nil, nil, err
	}
	return roots, crls, names, nil
}
