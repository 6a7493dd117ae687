package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"

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
	c := newTLSCommand("connect", "HOST:PORT", stderr)
	serverName := c.fs.String("servername", "", "PSK: server_name (SNI) to send; x509: the name the server must prove (default: HOST)")
	addr, code := c.parse(args)
	if code != 0 {
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
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return c.fail(err)
		}
		defer raw.Close()
		if c.ktls {
			s, err := stdtls.Client(ctx, raw, cfg)
			if err != nil {
				return c.fail(fmt.Errorf("handshake with %s: %w", addr, err))
			}
			describeX509(stderr, "connected to "+addr, s)
			return c.kernelCopy(sig, raw, s, stdin, stdout)
		}
		conn := tls.Client(raw, cfg)
		defer conn.Close()
		if err := conn.HandshakeContext(ctx); err != nil {
			return c.fail(fmt.Errorf("handshake with %s: %w", addr, err))
		}
		describeTLS(stderr, "connected to "+addr, conn.ConnectionState())
		defer context.AfterFunc(sig, func() { endSession(conn, raw) })()
		if err := copyBoth(conn, stdin, stdout); err != nil {
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
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return c.fail(err)
	}
	conn := tls13.Client(raw, cfg)
	defer conn.Close()
	if err := conn.Handshake(ctx); err != nil {
		return c.fail(fmt.Errorf("handshake with %s: %w", addr, err))
	}
	describe(stderr, "connected to "+addr, conn.State())
	if c.ktls {
		s, err := conn.Handoff()
		if err != nil {
			return c.fail(err)
		}
		return c.kernelCopy(sig, raw, s, stdin, stdout)
	}
	data := withKeyUpdates(conn, func() error { return conn.KeyUpdate(false) }, c.updateEvery)
	defer context.AfterFunc(sig, func() { endSession(conn, raw) })()
	if err := copyBoth(data, stdin, stdout); err != nil {
		return c.fail(err)
	}
	return 0
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
