package certs

import (
	"crypto/x509"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	p := newTestPKI(t)
	revoked := p.inter.Leaf(t, certstest.ECDSAP256, certstest.CN("revoked"))
	srv := p.server.WriteFiles(t, dir, "server")
	cli := p.client.WriteFiles(t, dir, "client")
	rev := revoked.WriteFiles(t, dir, "revoked")
	crl := certstest.WriteFile(t, dir, "inter.crl", certstest.CRLPEM(p.inter.CRL(t, revoked.Cert)))

	server := Flags{CertFile: srv.Cert, KeyFile: srv.Key, CAFile: srv.CA, CRLFiles: []string{crl}, RequireClientCert: true}
	scfg, err := server.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("mutual", func(t *testing.T) {
		ccfg, err := Flags{CertFile: cli.Cert, KeyFile: cli.Key, CAFile: cli.CA, ServerName: "nfs.example.com"}.ClientConfig(netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		c, s := handshake(t, ccfg, scfg)
		if c.err != nil || s.err != nil || len(s.s.PeerCertificates) != 2 {
			t.Fatalf("client: %v; server: %v", c.err, s.err)
		}
	})
	t.Run("peer address", func(t *testing.T) {
		ccfg, err := Flags{CertFile: cli.Cert, KeyFile: cli.Key, CAFile: cli.CA}.ClientConfig(netip.MustParseAddr("127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if c, s := handshake(t, ccfg, scfg); c.err != nil || s.err != nil {
			t.Fatalf("client: %v; server: %v", c.err, s.err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		ccfg, err := Flags{CAFile: cli.CA, ServerName: "localhost"}.ClientConfig(netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		_, s := handshake(t, ccfg, scfg)
		wantRejected(t, s.err, tls13.AlertCertificateRequired, func(error) bool { return true })

		opt, err := Flags{CertFile: srv.Cert, KeyFile: srv.Key, CAFile: srv.CA}.ServerConfig()
		if err != nil {
			t.Fatal(err)
		}
		if c, s := handshake(t, ccfg, opt); c.err != nil || s.err != nil {
			t.Fatalf("optional: client: %v; server: %v", c.err, s.err)
		}
	})
	t.Run("revoked client", func(t *testing.T) {
		ccfg, err := Flags{CertFile: rev.Cert, KeyFile: rev.Key, CAFile: rev.CA, ServerName: "localhost"}.ClientConfig(netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		_, s := handshake(t, ccfg, scfg)
		wantRejected(t, s.err, tls13.AlertBadCertificate, is(ErrRevoked))
	})
	t.Run("allow-list", func(t *testing.T) {
		f := server
		f.AllowedNames = []string{"spiffe://example.org/other"}
		scfg, err := f.ServerConfig()
		if err != nil {
			t.Fatal(err)
		}
		ccfg, _ := Flags{CertFile: cli.Cert, KeyFile: cli.Key, CAFile: cli.CA, ServerName: "localhost"}.ClientConfig(netip.Addr{})
		_, s := handshake(t, ccfg, scfg)
		wantRejected(t, s.err, tls13.AlertBadCertificate, asNotAllowed)
	})
	t.Run("server name mismatch", func(t *testing.T) {
		ccfg, _ := Flags{CAFile: cli.CA, ServerName: "192.0.2.1"}.ClientConfig(netip.Addr{})
		c, _ := handshake(t, ccfg, scfg)
		wantRejected(t, c.err, tls13.AlertBadCertificate, asHostname)
	})
	t.Run("errors", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.pem")
		for name, err := range map[string]error{
			"server without certificate": func() error { _, err := Flags{}.ServerConfig(); return err }(),
			"key without certificate": func() error {
				_, err := Flags{KeyFile: cli.Key, ServerName: "x"}.ClientConfig(netip.Addr{})
				return err
			}(),
			"no server name":  func() error { _, err := Flags{CAFile: cli.CA}.ClientConfig(netip.Addr{}); return err }(),
			"missing CA file": func() error { _, err := Flags{CAFile: missing, ServerName: "x"}.ClientConfig(netip.Addr{}); return err }(),
			"missing CRL file": func() error {
				_, err := Flags{CertFile: srv.Cert, KeyFile: srv.Key, CRLFiles: []string{missing}}.ServerConfig()
				return err
			}(),
			"bad allow-list": func() error {
				_, err := Flags{ServerName: "x", AllowedNames: []string{"a b"}}.ClientConfig(netip.Addr{})
				return err
			}(),
		} {
			if err == nil {
				t.Errorf("%s: no error", name)
			}
		}
		_, err := Flags{}.ServerConfig()
		if !errors.Is(err, ErrNoCertificate) {
			t.Errorf("err = %v", err)
		}
		_, err = Flags{CAFile: missing, ServerName: "x"}.ClientConfig(netip.Addr{})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v", err)
		}
	})
	_ = x509.ExtKeyUsageAny
}
