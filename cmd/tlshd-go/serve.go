package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/tlshd-go/tlshd-go/handshake/stdtls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// runServe is `tlshd-go serve`: a TLS 1.3 server that echoes what each
// client sends, one goroutine per connection, until interrupted. With
// --cert it serves x509 (--ca, --crl, --require-client-cert,
// --allowed-name check clients as the daemon would).
func runServe(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := newTLSCommand("serve", "ADDR", "userspace TLS 1.3 echo server, like openssl s_server", stdin, stdout, stderr)
	once := c.fs.Bool("once", false, "serve a single connection, then exit with its handshake's status")
	c.fs.BoolVar(&c.cert.RequireClientCert, "require-client-cert", false, "x509: mutual TLS; without it a client certificate is verified if sent")
	mp := newMPTCPFlag(c.fs.FlagSet)
	addr, code := c.parse(args)
	if addr == "" {
		return code
	}

	// handshake returns the connection application data flows over:
	// userspace TLS, or kTLS with --ktls.
	var handshake func(ctx context.Context, raw net.Conn) (io.ReadWriteCloser, error)
	if c.x509 {
		cfg, err := c.cert.ServerConfig()
		if err != nil {
			return c.fail(err)
		}
		cfg.MinVersion, cfg.SessionTicketsDisabled = tls.VersionTLS13, true
		handshake = func(ctx context.Context, raw net.Conn) (io.ReadWriteCloser, error) {
			what := "accepted " + raw.RemoteAddr().String() + mp.note(raw)
			if c.ktls {
				s, err := stdtls.Server(ctx, raw, cfg)
				if err != nil {
					return nil, err
				}
				describeX509(stderr, what, s)
				return c.kernel(raw, s)
			}
			conn := tls.Server(raw, cfg)
			if err := conn.HandshakeContext(ctx); err != nil {
				return nil, err
			}
			describeTLS(stderr, what, conn.ConnectionState())
			return conn, nil
		}
	} else {
		cfg, psk, err := c.pskConfig()
		if err != nil {
			return c.fail(err)
		}
		cfg.GetPSK = func(identity []byte) (*tls13.PSK, error) {
			if subtle.ConstantTimeCompare(identity, psk.Identity) != 1 {
				return nil, fmt.Errorf("identity %q: %w", identity, tls13.ErrUnknownPSK)
			}
			p := *psk
			return &p, nil
		}
		handshake = func(ctx context.Context, raw net.Conn) (io.ReadWriteCloser, error) {
			conn := tls13.Server(raw, cfg)
			if err := conn.Handshake(ctx); err != nil {
				return nil, err
			}
			describe(stderr, "accepted "+raw.RemoteAddr().String()+mp.note(raw), conn.State())
			if c.ktls {
				s, err := conn.Handoff()
				if err != nil {
					return nil, err
				}
				return c.kernel(raw, s)
			}
			return readWriteCloser{withKeyUpdates(conn, func() error { return conn.KeyUpdate(false) }, c.updateEvery), conn}, nil
		}
	}

	// Signals first: from "listening on", SIGTERM ends the sessions.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := mp.listen(addr)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(stderr, "listening on %s\n", l.Addr())
	go func() { <-ctx.Done(); l.Close() }()

	serveConn := func(raw net.Conn) error {
		hctx, cancel := context.WithTimeout(ctx, c.tf.timeout.d)
		defer cancel()
		defer raw.Close()
		if err := mp.prepare(raw, c.ktls); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", raw.RemoteAddr(), err)
			return err
		}
		defer mp.watch(raw).report(stderr, raw.RemoteAddr().String())
		conn, err := handshake(hctx, raw)
		if err != nil {
			fmt.Fprintf(stderr, "handshake with %s failed: %v\n", raw.RemoteAddr(), err)
			return err
		}
		defer conn.Close() // close_notify
		// SIGTERM ends the session too: close_notify, then the read
		// side, which wakes the read a kTLS socket may block in.
		defer context.AfterFunc(ctx, func() { endSession(conn, raw) })()
		if _, err := io.Copy(conn, conn); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", raw.RemoteAddr(), err)
		}
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		raw, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			return c.fail(err)
		}
		if *once {
			l.Close()
			if serveConn(raw) != nil {
				return 1
			}
			return 0
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(raw)
		}()
	}
}

// kernel hands a server connection to kTLS, with key updates if asked.
func (c *tlsCommand) kernel(raw net.Conn, s *tls13.Session) (io.ReadWriteCloser, error) {
	kc, err := toKernel(raw, s)
	if err != nil {
		return nil, err
	}
	return readWriteCloser{withKeyUpdates(kc, func() error { return kc.Update(false) }, c.updateEvery), kc}, nil
}

// readWriteCloser joins a data path to what closes it.
type readWriteCloser struct {
	io.ReadWriter
	io.Closer
}

// endSession ends a TLS session the command holds: close_notify (Close
// sends it, for userspace TLS and kTLS alike), then shutdown of the
// socket's read side, so that a read blocked on it returns.
func endSession(conn io.Closer, raw net.Conn) {
	conn.Close()
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.CloseRead()
	}
}
