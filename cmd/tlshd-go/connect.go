package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// runConnect is `tlshd-go connect`: a TLS 1.3 client that copies stdin
// to the peer and the peer's data to stdout. When stdin ends it sends
// close_notify and keeps reading until the peer closes. The exit status
// is 0 only if the handshake succeeded (and the transfer did not fail).
func runConnect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tf tlsFlags
	tf.register(fs)
	serverName := fs.String("servername", "", "server_name (SNI) to send")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tlshd-go connect [flags] HOST:PORT")
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
		fmt.Fprintf(stderr, "tlshd-go connect: %v\n", err)
		return 1
	}
	cfg, err := tf.config()
	if err != nil {
		return fail(err)
	}
	psk, err := tf.resolvePSK()
	if err != nil {
		return fail(err)
	}
	cfg.PSKs = []tls13.PSK{*psk}
	cfg.ServerName = *serverName

	ctx, cancel := context.WithTimeout(context.Background(), tf.timeout.d)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", fs.Arg(0))
	if err != nil {
		return fail(err)
	}
	conn := tls13.Client(raw, cfg)
	defer conn.Close()
	if err := conn.Handshake(ctx); err != nil {
		return fail(fmt.Errorf("handshake with %s: %w", fs.Arg(0), err))
	}
	describe(stderr, "connected to "+fs.Arg(0), conn.State())
	if err := copyBoth(conn, stdin, stdout); err != nil {
		return fail(err)
	}
	return 0
}

// copyBoth copies in to conn and conn to out; the end of in becomes
// close_notify, and it returns once the peer has closed.
func copyBoth(conn *tls13.Conn, in io.Reader, out io.Writer) error {
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

// describe prints what a handshake negotiated, for operators.
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
