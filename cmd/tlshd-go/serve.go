package main

import (
	"context"
	"crypto/subtle"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// runServe is `tlshd-go serve`: a TLS 1.3 server that echoes what each
// client sends, one goroutine per connection, until interrupted.
func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tf tlsFlags
	tf.register(fs)
	once := fs.Bool("once", false, "serve a single connection, then exit with its handshake's status")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tlshd-go serve [flags] ADDR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tlshd-go serve: %v\n", err)
		return 1
	}
	cfg, err := tf.config()
	if err != nil {
		return fail(err)
	}
	if tf.noDHE {
		cfg.PSKModes = []tls13.PSKMode{tls13.PSKModeKE}
	}
	psk, err := tf.resolvePSK()
	if err != nil {
		return fail(err)
	}
	cfg.GetPSK = func(identity []byte) (*tls13.PSK, error) {
		if subtle.ConstantTimeCompare(identity, psk.Identity) != 1 {
			return nil, fmt.Errorf("identity %q: %w", identity, tls13.ErrUnknownPSK)
		}
		p := *psk
		return &p, nil
	}

	l, err := net.Listen("tcp", fs.Arg(0))
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stderr, "listening on %s\n", l.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); l.Close() }()

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		raw, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			return fail(err)
		}
		if *once {
			l.Close()
			if err := serveConn(ctx, raw, cfg, tf, stderr); err != nil {
				return 1
			}
			return 0
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(ctx, raw, cfg, tf, stderr)
		}()
	}
}

func serveConn(ctx context.Context, raw net.Conn, cfg *tls13.Config, tf tlsFlags, stderr io.Writer) error {
	conn := tls13.Server(raw, cfg)
	defer conn.Close()
	hctx, cancel := context.WithTimeout(ctx, tf.timeout.d)
	defer cancel()
	peer := raw.RemoteAddr().String()
	if err := conn.Handshake(hctx); err != nil {
		fmt.Fprintf(stderr, "handshake with %s failed: %v\n", peer, err)
		return err
	}
	describe(stderr, "accepted "+peer, conn.State())
	if _, err := io.Copy(conn, conn); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", peer, err)
	}
	return nil
}
