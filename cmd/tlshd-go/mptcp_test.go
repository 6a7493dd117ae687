package main

import (
	"bytes"
	"context"
	"crypto"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// requireMPTCP skips where loopback MPTCP does not work, and fails in CI,
// whose hosts and VM kernels have it.
func requireMPTCP(t *testing.T) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err == nil {
		defer l.Close()
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Close()
			}
		}()
		var d net.Dialer
		d.SetMultipathTCP(true)
		var c net.Conn
		if c, err = d.Dial("tcp", l.Addr().String()); err == nil {
			defer c.Close()
			var mp bool
			if mp, err = c.(*net.TCPConn).MultipathTCP(); err == nil && mp {
				return
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no MPTCP in CI (%v)", err)
	}
	t.Skipf("no MPTCP on this host (%v)", err)
}

var mptcpPSK = []string{"--psk-identity", testID, "--psk", strings.Repeat("ab", 32), "--mptcp"}

// TestConnectServeMPTCP: both ends MPTCP, data echoed, and both say the
// connection is MPTCP (one subflow over loopback) in their summaries.
func TestConnectServeMPTCP(t *testing.T) {
	requireMPTCP(t)
	msg := bigEcho(t, mptcpPSK, mptcpPSK, 200000)
	for _, want := range []string{"(MPTCP, 1 subflow so far): TLS 1.3", "MPTCP, single path: subflows 1 at the handshake"} {
		if !strings.Contains(msg, want) {
			t.Errorf("connect said %q, want %q", msg, want)
		}
	}
}

// TestConnectMPTCPFallback: a server without MPTCP makes the client's
// MPTCP socket fall back, which connect reports; with --ktls it refuses
// such a connection before the handshake.
func TestConnectMPTCPFallback(t *testing.T) {
	requireMPTCP(t)
	for _, kernelTLS := range []bool{false, true} {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		got := make(chan int, 1) // bytes the server received
		go func() {
			c, err := l.Accept()
			if err != nil {
				got <- -1
				return
			}
			defer c.Close()
			if kernelTLS {
				n, _ := io.Copy(io.Discard, c)
				got <- int(n)
				return
			}
			s := tls13.Server(c, &tls13.Config{GetPSK: func([]byte) (*tls13.PSK, error) {
				return &tls13.PSK{Key: bytes.Repeat([]byte{0xab}, 32), Hash: crypto.SHA256}, nil
			}})
			if s.Handshake(context.Background()) == nil {
				io.Copy(s, s)
				s.CloseWrite()
			}
			got <- 1
		}()
		args := mptcpPSK
		if kernelTLS {
			args = append(args[:len(args):len(args)], "--ktls")
		}
		var out, cerr testtool.Buffer
		code := run(append(append([]string{"connect"}, args...), l.Addr().String()), strings.NewReader("hi\n"), &out, &cerr)
		if !kernelTLS {
			if code != 0 || out.String() != "hi\n" || !strings.Contains(cerr.String(), "(MPTCP fell back to TCP): TLS 1.3") {
				t.Errorf("exit %d, echo %q, said %q; want the fallback in the summary", code, out.String(), cerr.String())
			}
			<-got
			continue
		}
		if code == 0 || !strings.Contains(cerr.String(), "fell back to plain TCP") {
			t.Errorf("--ktls: exit %d, said %q; want a refusal naming the fallback", code, cerr.String())
		}
		if n := <-got; n != 0 {
			t.Errorf("--ktls: the server received %d bytes, want none", n)
		}
	}
}

// TestConnectServeMPTCPKTLS: --ktls over a real MPTCP connection. Today's
// kernels (this host, Debian's 6.12 and 7.x in the VM) have no kTLS on
// MPTCP: connect says so before the handshake and sends nothing; serve
// refuses the same way. A kernel with the MPTCP kTLS series echoes.
func TestConnectServeMPTCPKTLS(t *testing.T) {
	requireMPTCP(t)
	args := append(mptcpPSK[:len(mptcpPSK):len(mptcpPSK)], "--ktls")
	if mptcpTakesKTLS(t) {
		bigEcho(t, args, args, 100000)
		return
	}
	addr, serr, done := serveOnce(t, args...)
	var out, cerr testtool.Buffer
	code := run(append(append([]string{"connect"}, args...), addr), strings.NewReader("hi\n"), &out, &cerr)
	if code == 0 || !strings.Contains(cerr.String(), "this kernel lacks kTLS on MPTCP sockets") || strings.Contains(cerr.String(), "TLS 1.3") {
		t.Errorf("connect: exit %d, said %q; want a refusal before the handshake", code, cerr.String())
	}
	if sc := <-done; sc == 0 || !strings.Contains(serr.String(), "this kernel lacks kTLS on MPTCP sockets") {
		t.Errorf("serve: exit %d, said %q; want the same refusal", sc, serr.String())
	}
}

// mptcpTakesKTLS asks the kernel with a throwaway loopback connection.
func mptcpTakesKTLS(t *testing.T) bool {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	var d net.Dialer
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ok bool
	err = withFD(c, func(fd int) error {
		var err error
		ok, err = ktls.ULPSupported(fd)
		return err
	})
	if err != nil {
		t.Logf("TLS ULP on MPTCP: %v", err)
	}
	return ok
}
