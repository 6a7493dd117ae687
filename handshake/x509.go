package handshake

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/stdtls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// peerAuthenticated is the REMOTE_AUTH a server reports for a client that
// presented a verified certificate; NFSD only tests it for non-zero (as
// ktls-utils 1.3 does, a constant rather than a key per certificate).
const peerAuthenticated int32 = -1 // 0xFFFFFFFF on the wire

// x509Handshake runs an x509 handshake, or an UNAUTH one (a client that
// verifies the server and presents nothing), through crypto/tls.
func (d *Daemon) x509Handshake(ctx context.Context, conn net.Conn, keys Keyring, req genl.Request, o *outcome, settings *config.Settings) (*tls13.Session, error) {
	x := settings.X509
	// Trust anchors, CRLs, name patterns and the policy's own
	// certificate were loaded with the policy (one generation per
	// reload); nothing is read from disk here.
	compiled := settings.Credentials()
	if compiled == nil {
		return nil, fmt.Errorf("%w: the policy's x509 files are not loaded (config.Parse)", errPolicy)
	}
	roots, err := compiled.Roots()
	if err != nil {
		return nil, err
	}
	crls, names := compiled.CRLs(), compiled.Names()

	curves, err := curvePreferences(settings.Groups)
	if err != nil {
		return nil, err
	}

	var own *tls.Certificate
	if req.Auth == genl.X509 || o.role == config.Server {
		c, err := d.credential(keys, req, compiled)
		if err != nil {
			return nil, err
		}
		defer certs.CloseKey(c)
		own = &c
	}

	if o.role == config.Client {
		opts := certs.ClientOptions{
			Certificate:          own,
			Roots:                roots,
			PeerName:             req.PeerName,
			PeerAddr:             o.peer.Addr(),
			CRLs:                 crls,
			RequireServerAuthEKU: x.RequireEKU,
			AllowedNames:         names,
			Time:                 d.Now,
			SkipNameCheck:        !x.VerifyPeerName,
		}
		cfg, err := certs.ClientConfig(opts)
		if err != nil {
			return nil, err
		}
		cfg.CurvePreferences = curves
		s, err := stdtls.Client(ctx, conn, cfg)
		if err != nil {
			return nil, err
		}
		if err := checkSuite(s, settings); err != nil {
			return nil, err
		}
		o.identity = certSubject(s)
		// The SunRPC client does not read a peer id; report none.
		return s, nil
	}

	clientAuth := map[config.ClientCertMode]certs.ClientAuth{
		config.ClientCertNone:     certs.ClientAuthNone,
		config.ClientCertOptional: certs.ClientAuthOptional,
		config.ClientCertRequired: certs.ClientAuthRequired,
	}[x.ClientCertificate]
	cfg, err := certs.ServerConfig(certs.ServerOptions{
		Certificates:         []tls.Certificate{*own},
		ClientAuth:           clientAuth,
		Roots:                roots,
		RequireClientAuthEKU: x.RequireEKU,
		AllowedNames:         names,
		CRLs:                 crls,
		Time:                 d.Now,
	})
	if err != nil {
		return nil, err
	}
	cfg.CurvePreferences = curves
	s, err := stdtls.Server(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkSuite(s, settings); err != nil {
		return nil, err
	}
	if len(s.PeerCertificates) > 0 {
		// A certificate that did not verify fails the handshake; one that
		// is here verified: mutual TLS.
		o.remoteAuth = []int32{peerAuthenticated}
		o.identity = certSubject(s)
	}
	return s, nil
}

// credential is this side's certificate: the one the kernel names by key
// serials (DER payloads), else the policy's, loaded with the policy (a
// TPM key is opened here, per handshake). None at all is ENOKEY.
func (d *Daemon) credential(keys Keyring, req genl.Request, compiled *certs.Compiled) (tls.Certificate, error) {
	for _, pair := range req.Certificates {
		if pair.Cert == 0 || pair.PrivKey == 0 {
			continue
		}
		cert, err := keys.Read(pair.Cert)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("%w: reading certificate key %d: %w", errNoKey, pair.Cert, err)
		}
		key, err := keys.Read(pair.PrivKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("%w: reading private key %d: %w", errNoKey, pair.PrivKey, err)
		}
		defer clear(key)
		return certs.FromDER(cert, key)
	}
	cred := compiled.Credential()
	if cred == nil {
		return tls.Certificate{}, fmt.Errorf("%w: no certificate in the request or the policy", errNoKey)
	}
	var opener certs.KeyOpener
	if d.OpenTPMKey != nil {
		opener = d.OpenTPMKey
	}
	c, err := cred.Certificate(opener)
	if errors.Is(err, certs.ErrNoKeyOpener) {
		return c, fmt.Errorf("%w: %w", errNoKey, err)
	}
	return c, err
}

func certSubject(s *tls13.Session) string {
	if len(s.VerifiedChains) > 0 && len(s.VerifiedChains[0]) > 0 {
		return s.VerifiedChains[0][0].Subject.String()
	}
	if len(s.PeerCertificates) > 0 {
		if c, err := x509.ParseCertificate(s.PeerCertificates[0]); err == nil {
			return c.Subject.String()
		}
	}
	return ""
}

// curvePreferences turns the policy's groups into crypto/tls's. Only the
// set counts: crypto/tls (since Go 1.24) orders groups itself. It has no
// finite-field groups: they are left out, and a policy naming only those
// cannot serve certificates.
func curvePreferences(groups []tls13.Group) ([]tls.CurveID, error) {
	ids := map[tls13.Group]tls.CurveID{
		tls13.X25519:         tls.X25519,
		tls13.P256:           tls.CurveP256,
		tls13.P384:           tls.CurveP384,
		tls13.X25519MLKEM768: tls.X25519MLKEM768,
	}
	var out []tls.CurveID
	for _, g := range groups {
		if id, ok := ids[g]; ok {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: none of the policy's groups %v works with certificates (crypto/tls has no ffdhe)", errPolicy, groups)
	}
	return out, nil
}

// checkSuite enforces the policy's cipher suites, which crypto/tls does
// not let a TLS 1.3 configuration choose: a handshake that settled on
// another suite is refused before its keys reach the kernel.
func checkSuite(s *tls13.Session, settings *config.Settings) error {
	if slices.Contains(settings.CipherSuites, s.Suite) {
		return nil
	}
	s.Zero()
	return fmt.Errorf("%w: the peer chose %v, which the policy does not allow (%v)", errPolicy, s.Suite, settings.CipherSuites)
}
