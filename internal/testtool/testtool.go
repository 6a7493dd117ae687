// Package testtool holds what the project's tests share: finding the
// interop peers (OpenSSL, GnuTLS, swtpm), free ports, loopback TCP pairs,
// and an output buffer that a child process or a logger writes while a
// test reads it.
package testtool

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"
)

// RequireTool returns the path of a command-line tool, or skips the test
// when it is not installed: unless TLSHD_REQUIRE_INTEROP=1 (CI sets it),
// which makes a missing tool a failure.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TLSHD_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s is not installed and TLSHD_REQUIRE_INTEROP=1 (apt-get install openssl gnutls-bin swtpm)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// FreePort returns a TCP port free on all addresses (gnutls-serv cannot
// choose its bind address).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TCPPair returns both ends of an established loopback TCP connection,
// closed at cleanup. Tests use real sockets, not net.Pipe, because what
// they check (no read past the handshake, kTLS, fd hand-off) is about a
// kernel receive queue.
func TCPPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		c.Close()
		t.Fatal(r.err)
	}
	client, server = c.(*net.TCPConn), r.c.(*net.TCPConn)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A Buffer collects output written from other goroutines; tests read it
// or wait for text to appear.
type Buffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// WaitFor waits until the output matches re and returns the submatches.
func (b *Buffer) WaitFor(re *regexp.Regexp, timeout time.Duration) ([]string, bool) {
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		m := re.FindStringSubmatch(b.buf.String())
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		if m != nil {
			return m, true
		}
		select {
		case <-ch:
		case <-deadline:
			return nil, false
		}
	}
}

// MPTCPPair connects an MPTCP client to a loopback listener that speaks
// MPTCP too if serverMPTCP (else the client falls back to plain TCP) and
// returns both ends, closed at cleanup. Where MPTCP is missing it skips
// the test, and fails it under CI=true, whose hosts and VM kernels have it.
func MPTCPPair(t testing.TB, serverMPTCP bool) (client *net.TCPConn, server net.Conn) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(serverMPTCP)
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	var d net.Dialer
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client = c.(*net.TCPConn)
	t.Cleanup(func() { client.Close() })
	if server = <-acc; server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close() })
	if serverMPTCP {
		if mp, err := client.MultipathTCP(); !mp {
			NoMPTCP(t, err)
		}
	}
	return client, server
}

// NoMPTCP skips a test on a host without MPTCP, and fails it under
// CI=true.
func NoMPTCP(t testing.TB, why any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("no MPTCP in CI: %v", why)
	}
	t.Skipf("no MPTCP on this host: %v", why)
}
