// Package stdtls runs x509 TLS 1.3 handshakes with crypto/tls on a socket
// that is then handed to kernel TLS, and returns what kTLS needs as a
// *tls13.Session.
//
// crypto/tls has no API for its traffic secrets or for stopping at a
// record boundary, so each handshake gets:
//
//   - a clone of the caller's tls.Config restricted to TLS 1.3 without
//     session tickets (so no record is sent under the application keys
//     before kTLS takes over, and both sequence numbers start at 0), with
//     an in-memory KeyLogWriter from which the traffic secrets are taken;
//   - a net.Conn wrapper whose reads never cross a record boundary, so
//     that nothing the peer sent after its last handshake record (its
//     first application data, NewSessionTickets from OpenSSL or GnuTLS
//     servers, a KeyUpdate) is consumed: kTLS reads it from the socket.
//
// Failures carry the alert involved as a *tls13.AlertError (see Client).
package stdtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// Client runs a TLS 1.3 client handshake on conn with a copy of cfg and
// returns the session for kTLS. conn is left open, and no byte after the
// server's last handshake record has been read from it; the session's
// sequence numbers are those of the next record in each direction (0 and
// 0). In TLS 1.3 the client finishes first: a server that rejects the
// client certificate does so with an alert that only arrives after Client
// has returned, and so reaches the kTLS socket's reader.
//
// The handshake ends when ctx does. If ctx has a deadline it is set on
// conn for the handshake, and conn's deadline is cleared afterwards
// whenever ctx can end.
//
// Errors:
//   - *tls13.AlertError with Received set if the server sent a fatal
//     alert;
//   - *tls13.AlertError with the alert crypto/tls sent, wrapping its
//     error: certificate verification failures wrap
//     *tls.CertificateVerificationError and through it the x509 error
//     (x509.UnknownAuthorityError, x509.CertificateInvalidError,
//     x509.HostnameError); errors from cfg.VerifyConnection and
//     cfg.VerifyPeerCertificate are wrapped as returned;
//   - io.ErrUnexpectedEOF (wrapped) if the server closed or reset the
//     connection mid-handshake;
//   - ctx.Err() (wrapped, and with os.ErrDeadlineExceeded for a passed
//     deadline) if ctx ended; os.ErrDeadlineExceeded for a deadline set
//     on conn by the caller.
func Client(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls13.Session, error) {
	return handshake(ctx, conn, cfg, true)
}

// Server is Client for the server side. It returns once the client's
// Finished (and certificate, if any) has been read and checked; the
// client's first application data is still unread. Errors are those of
// Client; a missing client certificate under
// tls.RequireAnyClientCert/RequireAndVerifyClientCert is
// *tls13.AlertError{Alert: tls13.AlertCertificateRequired}.
func Server(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls13.Session, error) {
	return handshake(ctx, conn, cfg, false)
}

func handshake(ctx context.Context, conn net.Conn, cfg *tls.Config, isClient bool) (*tls13.Session, error) {
	if cfg == nil {
		return nil, errors.New("stdtls: nil tls.Config")
	}
	kl := new(keyLog)
	c := cfg.Clone()
	restrict(c, kl)
	if gc := c.GetConfigForClient; gc != nil && !isClient {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			nc, err := gc(hello)
			if err != nil || nc == nil {
				return nc, err
			}
			nc = nc.Clone()
			restrict(nc, kl)
			nc.GetConfigForClient = nil
			return nc, nil
		}
	}

	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(d); err != nil {
			return nil, fmt.Errorf("stdtls: setting the handshake deadline: %w", err)
		}
	}
	rc := newRecordConn(conn)
	if ctx.Done() != nil {
		defer rc.settle()
	}

	var tc *tls.Conn
	if isClient {
		tc = tls.Client(rc, c)
	} else {
		tc = tls.Server(rc, c)
	}
	err := tc.HandshakeContext(ctx)
	cs := tc.ConnectionState()
	if err != nil {
		err = handshakeError(ctx, err, rc, kl, isClient, cs.CipherSuite)
		kl.zero()
		return nil, err
	}
	kl.zeroHandshake()
	s, err := newSession(cs, kl, isClient, c.ServerName)
	if err != nil {
		kl.zero()
		return nil, err
	}
	return s, nil
}

// restrict makes c TLS 1.3-only, ticketless, and logging its keys to kl,
// which passes them on to c's own KeyLogWriter if it has one.
func restrict(c *tls.Config, kl *keyLog) {
	kl.tee = c.KeyLogWriter
	c.MinVersion = tls.VersionTLS13
	c.MaxVersion = tls.VersionTLS13
	c.SessionTicketsDisabled = true
	c.ClientSessionCache = nil
	c.Renegotiation = tls.RenegotiateNever
	c.KeyLogWriter = kl
}

// newSession fills the hand-off. VerifiedChains are crypto/tls's: empty
// when cfg verifies the peer in VerifyConnection instead.
func newSession(cs tls.ConnectionState, kl *keyLog, isClient bool, serverName string) (*tls13.Session, error) {
	suite := tls13.CipherSuite(cs.CipherSuite)
	if cs.Version != tls.VersionTLS13 || !suite.Supported() {
		return nil, fmt.Errorf("stdtls: negotiated version 0x%04x, suite %v: not TLS 1.3", cs.Version, suite)
	}
	tx, rx := kl.clientAP, kl.serverAP
	if !isClient {
		tx, rx = rx, tx
		serverName = cs.ServerName
	}
	n := suite.Hash().Size()
	if kl.malformed || len(tx) != n || len(rx) != n {
		return nil, errors.New("stdtls: crypto/tls logged no usable traffic secrets")
	}
	s := &tls13.Session{
		Suite:                suite,
		Group:                tls13.Group(cs.CurveID),
		IsClient:             isClient,
		TX:                   tls13.TrafficSecret{Secret: tx},
		RX:                   tls13.TrafficSecret{Secret: rx},
		DidHelloRetryRequest: cs.HelloRetryRequest,
		VerifiedChains:       cs.VerifiedChains,
		ServerName:           serverName,
	}
	for _, c := range cs.PeerCertificates {
		s.PeerCertificates = append(s.PeerCertificates, c.Raw)
	}
	return s, nil
}
