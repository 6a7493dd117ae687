package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/stdtls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

type side struct {
	s   *tls13.Session
	err error
}

// handshake runs stdtls client and server over loopback TCP.
func handshake(t *testing.T, ccfg, scfg *tls.Config) (client, server side) {
	t.Helper()
	cconn, sconn := testtool.TCPPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := make(chan side, 1)
	go func() {
		s, err := stdtls.Server(ctx, sconn, scfg)
		sconn.Close() // a refusal must reach the client as EOF, not a hang
		ch <- side{s, err}
	}()
	s, err := stdtls.Client(ctx, cconn, ccfg)
	if err != nil {
		cconn.CloseWrite()
	}
	return side{s, err}, <-ch
}

// wantRejected checks the side that failed: a sent alert wrapping want.
func wantRejected(t *testing.T, err error, alert tls13.Alert, want func(error) bool) {
	t.Helper()
	var ae *tls13.AlertError
	if !errors.As(err, &ae) || ae.Received || ae.Alert != alert {
		t.Fatalf("err = %v, want sent alert %v", err, alert)
	}
	if !want(err) {
		t.Fatalf("err = %v does not wrap the expected cause", err)
	}
}

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func asX509Invalid(reason x509.InvalidReason) func(error) bool {
	return func(err error) bool {
		var e x509.CertificateInvalidError
		return errors.As(err, &e) && e.Reason == reason
	}
}

func asUnknownAuthority(err error) bool {
	var e x509.UnknownAuthorityError
	return errors.As(err, &e)
}

func asHostname(err error) bool {
	var e x509.HostnameError
	return errors.As(err, &e)
}

func asNotAllowed(err error) bool {
	var e *NameNotAllowedError
	return errors.As(err, &e)
}

type testPKI struct {
	root, inter *certstest.CA
	server      *certstest.Leaf
	client      *certstest.Leaf
}

func newTestPKI(t *testing.T) *testPKI {
	root := certstest.NewCA(t, certstest.ECDSAP256, "root")
	inter := root.Intermediate(t, certstest.ECDSAP256, "intermediate")
	return &testPKI{
		root:   root,
		inter:  inter,
		server: inter.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com", "localhost"), certstest.IPs("127.0.0.1", "::1")),
		client: inter.Leaf(t, certstest.ECDSAP256, certstest.CN("client"), certstest.URIs("spiffe://example.org/client"),
			certstest.EKU(x509.ExtKeyUsageClientAuth)),
	}
}

func (p *testPKI) serverConfig(t *testing.T, leaf *certstest.Leaf, mod func(*ServerOptions)) *tls.Config {
	t.Helper()
	o := ServerOptions{Certificates: []tls.Certificate{leaf.TLS()}, Roots: p.root.Pool(), ClientAuth: ClientAuthOptional}
	if mod != nil {
		mod(&o)
	}
	cfg, err := ServerConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (p *testPKI) clientConfig(t *testing.T, mod func(*ClientOptions)) *tls.Config {
	t.Helper()
	o := ClientOptions{Roots: p.root.Pool(), PeerName: "nfs.example.com"}
	if mod != nil {
		mod(&o)
	}
	cfg, err := ClientConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestClientConfig(t *testing.T) {
	p := newTestPKI(t)
	other := certstest.NewCA(t, certstest.ECDSAP256, "other")
	revokedServer := p.inter.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"))
	crls := NewCRLSet(mustParseCRL(t, p.inter.CRL(t, revokedServer.Cert)))
	clientEKUOnly := p.inter.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"), certstest.EKU(x509.ExtKeyUsageClientAuth))

	ok := []struct {
		name   string
		server *certstest.Leaf
		mod    func(*ClientOptions)
		sni    string // what the server must see
	}{
		{"DNS name", p.server, nil, "nfs.example.com"},
		{"IPv4 name, no SNI", p.server, func(o *ClientOptions) { o.PeerName = "127.0.0.1" }, ""},
		{"bracketed IPv6 name", p.server, func(o *ClientOptions) { o.PeerName = "[::1]" }, ""},
		{"IPv4-mapped name", p.server, func(o *ClientOptions) { o.PeerName = "::ffff:127.0.0.1" }, ""},
		{"peer address", p.server, func(o *ClientOptions) { o.PeerName, o.PeerAddr = "", netip.MustParseAddr("127.0.0.1") }, ""},
		{"trailing dot", p.server, func(o *ClientOptions) { o.PeerName = "nfs.example.com." }, "nfs.example.com"},
		{"no EKU check by default", clientEKUOnly, nil, "nfs.example.com"},
		{"EKU required", p.server, func(o *ClientOptions) { o.RequireServerAuthEKU = true }, "nfs.example.com"},
		{"CRL, not revoked", p.server, func(o *ClientOptions) { o.CRLs = crls }, "nfs.example.com"},
		{"allowed name", p.server, func(o *ClientOptions) { o.AllowedNames = mustPolicy(t, "127.0.0.0/8") }, "nfs.example.com"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			c, s := handshake(t, p.clientConfig(t, tt.mod), p.serverConfig(t, tt.server, nil))
			if c.err != nil || s.err != nil {
				t.Fatalf("client: %v; server: %v", c.err, s.err)
			}
			if s.s.ServerName != tt.sni {
				t.Errorf("server saw SNI %q, want %q", s.s.ServerName, tt.sni)
			}
			if len(c.s.PeerCertificates) != 2 {
				t.Errorf("%d peer certificates", len(c.s.PeerCertificates))
			}
		})
	}

	bad := []struct {
		name   string
		server *certstest.Leaf
		mod    func(*ClientOptions)
		want   func(error) bool
	}{
		{"expired", p.inter.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"), certstest.Expired()), nil, asX509Invalid(x509.Expired)},
		{"unknown CA", other.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com")), nil, asUnknownAuthority},
		{"name mismatch", p.server, func(o *ClientOptions) { o.PeerName = "other.example.com" }, asHostname},
		{"IP mismatch", p.server, func(o *ClientOptions) { o.PeerName = "192.0.2.1" }, asHostname},
		{"revoked", revokedServer, func(o *ClientOptions) { o.CRLs = crls }, is(ErrRevoked)},
		{"EKU missing", clientEKUOnly, func(o *ClientOptions) { o.RequireServerAuthEKU = true }, asX509Invalid(x509.IncompatibleUsage)},
		{"name not allowed", p.server, func(o *ClientOptions) { o.AllowedNames = mustPolicy(t, "*.example.net") }, asNotAllowed},
		{"expired, EKU mode", p.inter.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"), certstest.Expired()),
			func(o *ClientOptions) { o.RequireServerAuthEKU = true }, asX509Invalid(x509.Expired)},
		{"clock", p.server, func(o *ClientOptions) {
			o.Time = func() time.Time { return time.Now().Add(48 * time.Hour) }
		}, asX509Invalid(x509.Expired)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c, s := handshake(t, p.clientConfig(t, tt.mod), p.serverConfig(t, tt.server, nil))
			// crypto/tls clients send bad_certificate for every failure.
			wantRejected(t, c.err, tls13.AlertBadCertificate, tt.want)
			var ae *tls13.AlertError
			if !errors.As(s.err, &ae) || !ae.Received || ae.Alert != tls13.AlertBadCertificate {
				t.Errorf("server: %v", s.err)
			}
		})
	}

	if _, err := ClientConfig(ClientOptions{}); !errors.Is(err, ErrNoPeerName) {
		t.Errorf("no name: %v", err)
	}
}

func TestClientCertificate(t *testing.T) {
	p := newTestPKI(t)
	// The client's issuer is not among the server's
	// certificate_authorities, where a plain crypto/tls client would
	// send no certificate; ours is sent anyway (the server receives it
	// and rejects it as unknown, rather than complaining that none came).
	otherRoot := certstest.NewCA(t, certstest.ECDSAP256, "unrelated")
	cert := p.client.TLS()
	ccfg := p.clientConfig(t, func(o *ClientOptions) { o.Certificate = &cert })
	scfg := p.serverConfig(t, p.server, func(o *ServerOptions) {
		o.ClientAuth = ClientAuthRequired
		o.Roots = otherRoot.Pool()
	})
	c, s := handshake(t, ccfg, scfg)
	if c.err != nil {
		t.Fatal(c.err)
	}
	wantRejected(t, s.err, tls13.AlertBadCertificate, asUnknownAuthority)

	// Without a certificate: none sent.
	c, s = handshake(t, p.clientConfig(t, nil), p.serverConfig(t, p.server, nil))
	if c.err != nil || s.err != nil || len(s.s.PeerCertificates) != 0 {
		t.Fatalf("client %v, server %v", c.err, s.err)
	}
}

func TestServerConfig(t *testing.T) {
	p := newTestPKI(t)
	other := certstest.NewCA(t, certstest.ECDSAP256, "other")
	revokedClient := p.inter.Leaf(t, certstest.ECDSAP256, certstest.CN("revoked"))
	crls := NewCRLSet(mustParseCRL(t, p.inter.CRL(t, revokedClient.Cert)))
	serverEKUOnly := p.inter.Leaf(t, certstest.ECDSAP256, certstest.EKU(x509.ExtKeyUsageServerAuth))
	expired := p.inter.Leaf(t, certstest.ECDSAP256, certstest.Expired())
	unknown := other.Leaf(t, certstest.ECDSAP256)
	mailClient := p.inter.Leaf(t, certstest.ECDSAP256, certstest.Emails("nfs@clients.example.com"), certstest.IPs("192.0.2.9"))

	ok := []struct {
		name   string
		client *certstest.Leaf // nil: none
		mod    func(*ServerOptions)
		peer   bool // a verified peer certificate is expected
	}{
		{"none", p.client, func(o *ServerOptions) { o.ClientAuth = ClientAuthNone }, false},
		{"optional, absent", nil, nil, false},
		{"optional, present", p.client, nil, true},
		{"required", p.client, func(o *ServerOptions) { o.ClientAuth = ClientAuthRequired }, true},
		{"required, EKU", p.client, func(o *ServerOptions) { o.ClientAuth, o.RequireClientAuthEKU = ClientAuthRequired, true }, true},
		{"optional, EKU, absent", nil, func(o *ServerOptions) { o.RequireClientAuthEKU = true }, false},
		{"no EKU check by default", serverEKUOnly, nil, true},
		{"allowed URI", p.client, func(o *ServerOptions) { o.AllowedNames = mustPolicy(t, "spiffe://example.org/*") }, true},
		{"allowed email domain", mailClient, func(o *ServerOptions) { o.AllowedNames = mustPolicy(t, "nfs.example.com", "@clients.example.com") }, true},
		{"allowed CIDR", mailClient, func(o *ServerOptions) { o.AllowedNames = mustPolicy(t, "192.0.2.0/28") }, true},
		{"CRL, not revoked", p.client, func(o *ServerOptions) { o.CRLs = crls }, true},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			c, s := handshake(t, clientWith(t, p, tt.client), p.serverConfig(t, p.server, tt.mod))
			if c.err != nil || s.err != nil {
				t.Fatalf("client: %v; server: %v", c.err, s.err)
			}
			if got := len(s.s.PeerCertificates) > 0; got != tt.peer {
				t.Errorf("peer certificate present: %v, want %v", got, tt.peer)
			}
		})
	}

	bad := []struct {
		name   string
		client *certstest.Leaf
		mod    func(*ServerOptions)
		alert  tls13.Alert
		want   func(error) bool
	}{
		{"required, absent", nil, func(o *ServerOptions) { o.ClientAuth = ClientAuthRequired }, tls13.AlertCertificateRequired, func(error) bool { return true }},
		{"required, EKU, absent", nil, func(o *ServerOptions) { o.ClientAuth, o.RequireClientAuthEKU = ClientAuthRequired, true }, tls13.AlertCertificateRequired, func(error) bool { return true }},
		{"optional, unknown CA", unknown, nil, tls13.AlertBadCertificate, asUnknownAuthority},
		{"optional, unknown CA, EKU", unknown, func(o *ServerOptions) { o.RequireClientAuthEKU = true }, tls13.AlertUnknownCA, asUnknownAuthority},
		{"expired", expired, func(o *ServerOptions) { o.ClientAuth = ClientAuthRequired }, tls13.AlertBadCertificate, asX509Invalid(x509.Expired)},
		{"expired, EKU", expired, func(o *ServerOptions) { o.RequireClientAuthEKU = true }, tls13.AlertCertificateExpired, asX509Invalid(x509.Expired)},
		{"EKU missing", serverEKUOnly, func(o *ServerOptions) { o.RequireClientAuthEKU = true }, tls13.AlertBadCertificate, asX509Invalid(x509.IncompatibleUsage)},
		{"revoked", revokedClient, func(o *ServerOptions) { o.CRLs = crls }, tls13.AlertBadCertificate, is(ErrRevoked)},
		{"revoked, EKU", revokedClient, func(o *ServerOptions) { o.CRLs, o.RequireClientAuthEKU = crls, true }, tls13.AlertBadCertificate, is(ErrRevoked)},
		{"name not allowed", p.client, func(o *ServerOptions) { o.AllowedNames = mustPolicy(t, "*.example.com", "10.0.0.0/8") }, tls13.AlertBadCertificate, asNotAllowed},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c, s := handshake(t, clientWith(t, p, tt.client), p.serverConfig(t, p.server, tt.mod))
			if c.err != nil {
				t.Fatalf("client: %v", c.err) // TLS 1.3: the client is done first
			}
			wantRejected(t, s.err, tt.alert, tt.want)
		})
	}

	if _, err := ServerConfig(ServerOptions{}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("no certificate: %v", err)
	}
	if _, err := ServerConfig(ServerOptions{Certificates: []tls.Certificate{p.server.TLS()}, ClientAuth: 7}); err == nil {
		t.Error("bad ClientAuth accepted")
	}
}

func TestChainTooLong(t *testing.T) {
	p := newTestPKI(t)
	leaf := p.client.TLS()
	for len(leaf.Certificate) <= MaxChainLen {
		leaf.Certificate = append(leaf.Certificate, p.inter.Cert.Raw)
	}
	ccfg := p.clientConfig(t, nil)
	ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf, nil }
	_, s := handshake(t, ccfg, p.serverConfig(t, p.server, nil))
	wantRejected(t, s.err, tls13.AlertBadCertificate, is(ErrChainTooLong))
}

func TestParseClientAuth(t *testing.T) {
	for _, a := range []ClientAuth{ClientAuthNone, ClientAuthOptional, ClientAuthRequired} {
		if got, err := ParseClientAuth(" " + a.String() + " "); err != nil || got != a {
			t.Errorf("ParseClientAuth(%q) = %v, %v", a, got, err)
		}
	}
	if _, err := ParseClientAuth("mandatory"); err == nil {
		t.Error("unknown value accepted")
	}
}

func clientWith(t *testing.T, p *testPKI, leaf *certstest.Leaf) *tls.Config {
	return p.clientConfig(t, func(o *ClientOptions) {
		if leaf != nil {
			c := leaf.TLS()
			o.Certificate = &c
		}
	})
}

func mustPolicy(t *testing.T, patterns ...string) *NamePolicy {
	t.Helper()
	p, err := ParseNamePolicy(patterns...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParseCRL(t *testing.T, der []byte) *x509.RevocationList {
	t.Helper()
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
