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

// x509Credentials are what an x509 or UNAUTH handshake runs with.
type x509Credentials struct {
	trust  x509Trust
	curves []tls.CurveID
	own    *tls.Certificate // nil for an UNAUTH client
}

// x509Trust is what the peer's certificate is checked against.
type x509Trust struct {
	roots *x509.CertPool
	crls  *certs.CRLSet
	names *certs.NamePolicy
}

// loadTrust takes the trust anchors, CRLs and name patterns that were
// loaded with the policy (one generation per reload): nothing is read
// from disk per handshake.
func loadTrust(compiled *certs.Compiled) (x509Trust, error) {
	roots, err := compiled.Roots()
	if err != nil {
		return x509Trust{}, err
	}
	return x509Trust{roots, compiled.CRLs(), compiled.Names()}, nil
}

// x509Credentials is the credentials step of x509 and UNAUTH requests:
// the trust to verify the peer with, the groups, and this side's
// certificate (a server always presents one, a client in x509 mode).
func (d *Daemon) x509Credentials(r *request) error {
	compiled := r.settings.Credentials()
	if compiled == nil {
		return fmt.Errorf("%w: the policy's x509 files are not loaded (config.Parse)", errPolicy)
	}
	trust, err := loadTrust(compiled)
	if err != nil {
		return err
	}
	curves, err := curvePreferences(r.settings.Groups)
	if err != nil {
		return err
	}
	c := &x509Credentials{trust: trust, curves: curves}
	if r.Auth == genl.X509 || r.kind.role == config.Server {
		own, err := d.credential(r.keys, r.Request, compiled)
		if err != nil {
			return err
		}
		r.cleanup = append(r.cleanup, func() { certs.CloseKey(own) })
		c.own = &own
	}
	r.x509 = c
	return nil
}

// x509Handshake runs an x509 handshake, or an UNAUTH one (a client that
// verifies the server and presents nothing), through crypto/tls.
func (d *Daemon) x509Handshake(ctx context.Context, r *request, conn net.Conn) (result, error) {
	x, c := r.settings.X509, r.x509
	var s *tls13.Session
	if r.kind.role == config.Client {
		cfg, err := certs.ClientConfig(certs.ClientOptions{
			Certificate:          c.own,
			Roots:                c.trust.roots,
			PeerName:             r.PeerName,
			PeerAddr:             r.peer.Addr(),
			ReverseName:          d.reverseName(ctx, r), // sni.go
			CRLs:                 c.trust.crls,
			RequireServerAuthEKU: x.RequireEKU,
			AllowedNames:         c.trust.names,
			Time:                 d.Now,
			SkipNameCheck:        !x.VerifyPeerName,
		})
		if err != nil {
			return result{}, err
		}
		cfg.CurvePreferences, cfg.KeyLogWriter = c.curves, d.KeyLog
		if s, err = stdtls.Client(ctx, conn, cfg); err != nil {
			return result{}, err
		}
	} else {
		cfg, err := certs.ServerConfig(certs.ServerOptions{
			Certificates:         []tls.Certificate{*c.own},
			ClientAuth:           clientAuth(x.ClientCertificate),
			Roots:                c.trust.roots,
			RequireClientAuthEKU: x.RequireEKU,
			AllowedNames:         c.trust.names,
			CRLs:                 c.trust.crls,
			Time:                 d.Now,
		})
		if err != nil {
			return result{}, err
		}
		cfg.CurvePreferences, cfg.KeyLogWriter = c.curves, d.KeyLog
		if s, err = stdtls.Server(ctx, conn, cfg); err != nil {
			return result{}, err
		}
	}
	if err := checkSuite(s, r.settings); err != nil {
		return result{}, err
	}
	res := result{session: s, identity: certSubject(s)}
	if r.kind.role == config.Server && len(s.PeerCertificates) > 0 {
		// A certificate that did not verify fails the handshake; one that
		// is here verified: mutual TLS. The SunRPC client reads no peer
		// id: a client reports none.
		res.remoteAuth = []int32{peerAuthenticated}
	}
	return res, nil
}

func clientAuth(m config.ClientCertMode) certs.ClientAuth {
	switch m {
	case config.ClientCertNone:
		return certs.ClientAuthNone
	case config.ClientCertRequired:
		return certs.ClientAuthRequired
	}
	return certs.ClientAuthOptional
}

// credential is this side's certificate: the one the kernel names by key
// serials (DER payloads), else the policy's, loaded with the policy (a
// TPM key is opened here, per handshake). None at all is ENOKEY.
func (d *Daemon) credential(keys keyThread, req genl.Request, compiled *certs.Compiled) (tls.Certificate, error) {
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
		tls13.X25519:             tls.X25519,
		tls13.P256:               tls.CurveP256,
		tls13.P384:               tls.CurveP384,
		tls13.X25519MLKEM768:     tls.X25519MLKEM768,
		tls13.SecP256r1MLKEM768:  tls.SecP256r1MLKEM768,
		tls13.SecP384r1MLKEM1024: tls.SecP384r1MLKEM1024,
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
