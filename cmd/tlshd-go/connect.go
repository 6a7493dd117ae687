package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/stdtls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// runConnect is `tlshd-go connect`: a TLS 1.3 client that copies stdin
// to the peer and the peer's data to stdout. When stdin ends it sends
// close_notify and keeps reading until the peer closes. The exit status
// is 0 only if the handshake succeeded (and the transfer did not fail).
// With --cert/--ca it checks a certificate setup as the daemon would for
// NFS (--servername is then the name the server must prove).
func runConnect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := newTLSCommand("connect", "HOST:PORT", "userspace TLS 1.3 client, like openssl s_client", stdin, stdout, stderr)
	serverName := c.fs.String("servername", "", "PSK: server_name (SNI) to send; x509: the name the server must prove (default: HOST)")
	mp := newMPTCPFlag(c.fs.FlagSet)
	addr, code := c.parse(args)
	if addr == "" {
		return code
	}
	// SIGINT or SIGTERM ends an open session with close_notify.
	sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sig, c.tf.timeout.d)
	defer cancel()

	if c.x509 {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return c.fail(err)
		}
		c.cert.ServerName = *serverName
		if c.cert.ServerName == "" {
			c.cert.ServerName = host
		}
		ip, _ := netip.ParseAddr(host)
		cfg, err := c.cert.ClientConfig(ip)
		if err != nil {
			return c.fail(err)
		}
		cfg.MinVersion, cfg.SessionTicketsDisabled = tls.VersionTLS13, true
		raw, err := mp.dial(ctx, addr, c.ktls)
		if err != nil {
			return c.fail(err)
		}
		defer raw.Close()
		defer mp.watch(raw).report(stderr, "connection to "+addr)
		if c.ktls {
			s, err := stdtls.Client(ctx, raw, cfg)
			if err != nil {
				return c.failHint(fmt.Errorf("handshake with %s: %w", addr, err))
			}
			describeX509(stderr, "connected to "+addr+mp.note(raw), s)
			return c.kernelCopy(sig, raw, s, c.stdin, stdout)
		}
		conn := tls.Client(raw, cfg)
		defer conn.Close()
		if err := conn.HandshakeContext(ctx); err != nil {
			return c.failHint(fmt.Errorf("handshake with %s: %w", addr, err))
		}
		early, err := awaitVerdict(conn, verdictGrace)
		if err != nil {
			return c.failHint(fmt.Errorf("%s refused the connection after the handshake: %w", addr, err))
		}
		describeTLS(stderr, "connected to "+addr+mp.note(raw), conn.ConnectionState())
		stdout.Write(early)
		defer context.AfterFunc(sig, func() { endSession(conn, raw) })()
		if err := copyBoth(conn, c.stdin, stdout); err != nil {
			return c.fail(err)
		}
		return 0
	}

	cfg, psk, err := c.pskConfig()
	if err != nil {
		return c.fail(err)
	}
	cfg.PSKs = []tls13.PSK{*psk}
	cfg.ServerName = *serverName
	raw, err := mp.dial(ctx, addr, c.ktls)
	if err != nil {
		return c.fail(err)
	}
	conn := tls13.Client(raw, cfg)
	defer conn.Close()
	defer mp.watch(raw).report(stderr, "connection to "+addr)
	if err := conn.Handshake(ctx); err != nil {
		return c.failHint(fmt.Errorf("handshake with %s: %w", addr, err))
	}
	describe(stderr, "connected to "+addr+mp.note(raw), conn.State())
	if c.ktls {
		s, err := conn.Handoff()
		if err != nil {
			return c.fail(err)
		}
		return c.kernelCopy(sig, raw, s, c.stdin, stdout)
	}
	data := withKeyUpdates(conn, func() error { return conn.KeyUpdate(false) }, c.updateEvery)
	defer context.AfterFunc(sig, func() { endSession(conn, raw) })()
	if err := copyBoth(data, c.stdin, stdout); err != nil {
		return c.fail(err)
	}
	return 0
}

// verdictGrace is how long connect waits after a TLS 1.3 handshake for
// the server's verdict on our Finished and certificate.
const verdictGrace = 500 * time.Millisecond

// awaitVerdict waits up to grace for the server's first record after the
// handshake. A TLS 1.3 client finishes its handshake before the server has
// checked the client's certificate (RFC 8446 4.4.2.4): a server that
// refuses it sends its alert only then, and "connected" printed at
// Handshake's return would be a lie. It returns data the server sent
// first, if any; silence for grace counts as accepted.
func awaitVerdict(conn *tls.Conn, grace time.Duration) ([]byte, error) {
	buf := make([]byte, 16384)
	conn.SetReadDeadline(time.Now().Add(grace))
	defer conn.SetReadDeadline(time.Time{})
	n, err := conn.Read(buf)
	switch {
	case n > 0:
		return buf[:n], nil
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, io.EOF):
		// crypto/tls keeps the connection usable after a read timeout.
		return nil, nil
	}
	return nil, err
}

// failHint reports a failed client handshake with what probably caused it.
func (c *tlsCommand) failHint(err error) int {
	c.fail(err)
	if h := clientHint(err); h != "" {
		fmt.Fprintf(c.stderr, "hint: %s\n", h)
	}
	return 1
}

// clientHint guesses the cause of a client-side failure from the alert
// the server sent: alerts are terse and name the symptom, not the cause.
func clientHint(err error) string {
	var alert *tls13.AlertError
	if errors.As(err, &alert) && alert.Received {
		switch alert.Alert {
		case tls13.AlertUnknownPSKIdentity:
			return "the server does not know our PSK identity: compare --psk-identity with the server's (for NVMe: host NQN, subsystem NQN, hash and digest)"
		case tls13.AlertIllegalParameter, tls13.AlertDecryptError, tls13.AlertBadRecordMAC:
			// The binder, computed from the PSK, did not verify.
			return "the server's PSK differs from ours for this identity (or it uses the other hash: --hash)"
		case tls13.AlertHandshakeFailure:
			return "no common cipher suite, group or PSK mode (--suites, --groups, --no-dhe)"
		}
		return ""
	}
	msg := err.Error()
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case strings.Contains(msg, "certificate required"):
		return "the server requires a client certificate: pass --cert FILE (and --key FILE)"
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"),
		strings.Contains(msg, "remote error: tls: bad certificate"):
		return "the server does not accept our certificate: is it signed by an anchor the server trusts, and not expired?"
	case errors.As(err, &unknownCA):
		return "the server's certificate does not chain to our trust anchors: --ca FILE"
	case errors.As(err, &hostname):
		return "the server's certificate is not for this name: --servername NAME"
	case strings.Contains(msg, "connection refused"):
		return "nothing listens there"
	}
	return ""
}

// kernelCopy hands the connection to kTLS and copies both ways through
// the kernel, with key updates if asked.
// A signal (sig done) ends the session with close_notify.
func (c *tlsCommand) kernelCopy(sig context.Context, raw net.Conn, s *tls13.Session, in io.Reader, out io.Writer) int {
	kc, err := toKernel(raw, s)
	if err != nil {
		return c.fail(err)
	}
	defer kc.Close() // close_notify
	defer context.AfterFunc(sig, func() { endSession(kc, raw) })()
	data := withKeyUpdates(kc, func() error { return kc.Update(false) }, c.updateEvery)
	err = copyBoth(data, in, out)
	sent, received := kc.Updates()
	if sent+received > 0 {
		fmt.Fprintf(c.stderr, "key updates: %d sent, %d received\n", sent, received)
	}
	if err != nil {
		return c.fail(err)
	}
	return 0
}

// halfCloser is a connection whose sending side can be closed with
// close_notify: tls13.Conn and tls.Conn.
type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// copyBoth copies in to conn and conn to out; the end of in becomes
// close_notify, and it returns once the peer has closed.
func copyBoth(conn halfCloser, in io.Reader, out io.Writer) error {
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := io.Copy(conn, in); err != nil {
			werr = err
		}
		conn.CloseWrite()
	}()
	_, rerr := io.Copy(out, conn)
	if rerr != nil && errors.Is(rerr, io.EOF) {
		rerr = nil
	}
	// The peer closed: stdin may block forever (a terminal); don't wait
	// for it unless it already ended.
	return errors.Join(rerr, werr)
}

// describe prints what a PSK handshake negotiated, for operators.
func describe(w io.Writer, what string, s tls13.Session) {
	group := s.Group.String()
	if s.PSKMode == tls13.PSKModeKE {
		group = "none (psk_ke)"
	}
	hrr := ""
	if s.DidHelloRetryRequest {
		hrr = " after HelloRetryRequest"
	}
	fmt.Fprintf(w, "%s: TLS 1.3 %v, group %s, %v, identity %q%s\n",
		what, s.Suite, group, s.PSKMode, s.PSKIdentity, hrr)
}
