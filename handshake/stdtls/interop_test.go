package stdtls

// Interoperability with OpenSSL (s_server, s_client) and GnuTLS
// (gnutls-serv, gnutls-cli) for RSA-2048, ECDSA P-256 and Ed25519
// credentials, with and without client certificates. Each cell checks
// that application data flows both ways through the session's secrets
// starting at its sequence numbers, which also proves that the handshake
// left the peer's first record (and any NewSessionTicket) in the socket.
//
// A missing tool skips its cells, unless TLSHD_REQUIRE_INTEROP=1 (as in
// CI), which makes it a failure.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

const interopTimeout = 10 * time.Second

// child is a peer process, killed when the test ends.
type child struct {
	cmd   *exec.Cmd
	out   *testtool.Buffer
	stdin io.WriteCloser
	done  chan struct{}
}

func startChild(t *testing.T, name string, args ...string) *child {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*interopTimeout)
	cmd := exec.CommandContext(ctx, name, args...)
	c := &child{cmd: cmd, out: &testtool.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.stdin.Close()
		cmd.Process.Kill()
		<-c.done
		cancel()
		if t.Failed() {
			t.Logf("%s %s output:\n%s", name, strings.Join(args, " "), c.out)
		}
	})
	return c
}

func (c *child) waitFor(t *testing.T, re string) []string {
	t.Helper()
	m, ok := c.out.WaitFor(regexp.MustCompile(re), interopTimeout)
	if !ok {
		t.Fatalf("%s: no %q in its output", c.cmd.Path, re)
	}
	return m
}

// interopCreds are one key type's credentials written as PEM files.
type interopCreds struct {
	p              *pki
	server, client certstest.Files
}

func writeCreds(t *testing.T, kt certstest.KeyType) *interopCreds {
	dir := t.TempDir()
	p := newPKI(t, kt)
	return &interopCreds{
		p:      p,
		server: p.server.WriteFiles(t, dir, "server"),
		client: p.client.WriteFiles(t, dir, "client"),
	}
}

// exchange checks data both ways on a session: the peer echoes (or
// reverses) what we send, possibly after NewSessionTickets.
func exchangeEcho(t *testing.T, conn net.Conn, s *tls13.Session, send, want string) int {
	t.Helper()
	newRecordWriter(t, conn, s).write([]byte(send))
	r := newRecordReader(t, conn, s)
	var got []byte
	tickets := 0
	for !strings.Contains(string(got), want) {
		data, n := r.readData()
		tickets += n
		got = append(got, data...)
	}
	return tickets
}

var tls13Only = "NORMAL:-VERS-ALL:+VERS-TLS1.3"

func TestInterop(t *testing.T) {
	for _, kt := range keyTypes {
		creds := writeCreds(t, kt)
		for _, mutual := range []bool{false, true} {
			auth := "server-auth"
			if mutual {
				auth = "mutual"
			}
			t.Run(fmt.Sprintf("openssl-s_server/%v/%s", kt, auth), func(t *testing.T) {
				clientVsOpenSSL(t, creds, mutual)
			})
			t.Run(fmt.Sprintf("gnutls-serv/%v/%s", kt, auth), func(t *testing.T) {
				clientVsGnuTLS(t, creds, mutual)
			})
			t.Run(fmt.Sprintf("openssl-s_client/%v/%s", kt, auth), func(t *testing.T) {
				serverVsOpenSSL(t, creds, mutual)
			})
			t.Run(fmt.Sprintf("gnutls-cli/%v/%s", kt, auth), func(t *testing.T) {
				serverVsGnuTLS(t, creds, mutual)
			})
		}
	}
}

func (c *interopCreds) ourClientConfig(mutual bool) *tls.Config {
	if mutual {
		return c.p.mtlsClientConfig()
	}
	return c.p.clientConfig()
}

func (c *interopCreds) ourServerConfig(mutual bool) *tls.Config {
	if mutual {
		return c.p.mtlsServerConfig()
	}
	return c.p.serverConfig()
}

func dialPeer(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, interopTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func runClient(t *testing.T, conn net.Conn, cfg *tls.Config) *tls13.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	defer cancel()
	s, err := Client(ctx, conn, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if s.TX.Seq != 0 || s.RX.Seq != 0 {
		t.Fatalf("sequence numbers %d/%d", s.TX.Seq, s.RX.Seq)
	}
	return s
}

func clientVsOpenSSL(t *testing.T, c *interopCreds, mutual bool) {
	openssl := testtool.RequireTool(t, "openssl")
	args := []string{"s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev", "-tls1_3",
		"-cert", c.server.Cert, "-key", c.server.Key}
	if mutual {
		args = append(args, "-Verify", "1", "-verify_return_error", "-CAfile", c.server.CA)
	}
	srv := startChild(t, openssl, args...)
	port := srv.waitFor(t, `ACCEPT 127\.0\.0\.1:(\d+)`)[1]
	conn := dialPeer(t, "127.0.0.1:"+port)
	s := runClient(t, conn, c.ourClientConfig(mutual))
	tickets := exchangeEcho(t, conn, s, "hello interop\n", "poretni olleh")
	// OpenSSL servers send two tickets even to a client that cannot
	// use them; kTLS will read them at RX sequence 0 and 1.
	t.Logf("%v, %v; %d NewSessionTickets before the data", s.Suite, s.Group, tickets)
	if tickets == 0 {
		t.Error("expected NewSessionTickets from s_server")
	}
	if mutual {
		srv.waitFor(t, `(?i)verify return:1`)
	}
}

func clientVsGnuTLS(t *testing.T, c *interopCreds, mutual bool) {
	gnutlsServ := testtool.RequireTool(t, "gnutls-serv")
	var srv *child
	var port string
	for attempt := 0; ; attempt++ {
		port = strconv.Itoa(testtool.FreePort(t))
		args := []string{"--echo", "-p", port, "--priority", tls13Only,
			"--x509certfile", c.server.Cert, "--x509keyfile", c.server.Key}
		if mutual {
			args = append(args, "--require-client-cert", "--verify-client-cert", "--x509cafile", c.server.CA)
		} else {
			args = append(args, "--disable-client-cert")
		}
		srv = startChild(t, gnutlsServ, args...)
		m, ok := srv.out.WaitFor(regexp.MustCompile(`listening on IPv4 .*done|(?i)error|bind`), interopTimeout)
		if ok && strings.Contains(m[0], "listening") {
			break
		}
		if attempt == 2 {
			t.Fatalf("gnutls-serv did not start: %s", srv.out)
		}
	}
	conn := dialPeer(t, "127.0.0.1:"+port)
	s := runClient(t, conn, c.ourClientConfig(mutual))
	tickets := exchangeEcho(t, conn, s, "hello interop\n", "hello interop")
	t.Logf("%v, %v; %d NewSessionTickets before the data", s.Suite, s.Group, tickets)
	if tickets == 0 {
		t.Error("expected NewSessionTickets from gnutls-serv")
	}
}

// listenOnce accepts one connection on a loopback port.
func listenOnce(t *testing.T) (port string, accept func() net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, func() net.Conn {
		t.Helper()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(interopTimeout))
		conn, err := ln.Accept()
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
}

// serveOne runs our server on the accepted connection, then reads the
// client's first line at RX sequence 0 and answers at TX sequence 0.
func serveOne(t *testing.T, conn net.Conn, cfg *tls.Config, cl *child, mutual bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	defer cancel()
	s, err := Server(ctx, conn, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if mutual && (len(s.PeerCertificates) == 0 || len(s.VerifiedChains) == 0) {
		t.Fatal("no verified client certificate")
	}
	if !mutual && len(s.PeerCertificates) != 0 {
		t.Fatal("unexpected client certificate")
	}
	if _, err := io.WriteString(cl.stdin, "ping from client\n"); err != nil {
		t.Fatal(err)
	}
	got, tickets := newRecordReader(t, conn, s).readData()
	if !strings.Contains(string(got), "ping from client") || tickets != 0 {
		t.Fatalf("first record: %q after %d tickets", got, tickets)
	}
	newRecordWriter(t, conn, s).write([]byte("pong from server\n"))
	cl.waitFor(t, "pong from server")
	t.Logf("%v, %v", s.Suite, s.Group)
}

func serverVsOpenSSL(t *testing.T, c *interopCreds, mutual bool) {
	openssl := testtool.RequireTool(t, "openssl")
	port, accept := listenOnce(t)
	args := []string{"s_client", "-connect", "127.0.0.1:" + port, "-servername", "localhost",
		"-tls1_3", "-CAfile", c.client.CA, "-verify_return_error", "-verify_hostname", "localhost", "-quiet"}
	if mutual {
		args = append(args, "-cert", c.client.Cert, "-key", c.client.Key)
	}
	cl := startChild(t, openssl, args...)
	serveOne(t, accept(), c.ourServerConfig(mutual), cl, mutual)
}

func serverVsGnuTLS(t *testing.T, c *interopCreds, mutual bool) {
	gnutlsCli := testtool.RequireTool(t, "gnutls-cli")
	port, accept := listenOnce(t)
	args := []string{"-p", port, "--priority", tls13Only, "--x509cafile", c.client.CA,
		"--verify-hostname", "localhost", "--sni-hostname", "localhost"}
	if mutual {
		args = append(args, "--x509certfile", c.client.Cert, "--x509keyfile", c.client.Key)
	}
	args = append(args, "127.0.0.1")
	cl := startChild(t, gnutlsCli, args...)
	serveOne(t, accept(), c.ourServerConfig(mutual), cl, mutual)
}

// TestInteropRejections: the peers' verdicts come back as alerts.
func TestInteropRejections(t *testing.T) {
	creds := writeCreds(t, certstest.ECDSAP256)
	t.Run("openssl-s_client/no-certificate", func(t *testing.T) {
		openssl := testtool.RequireTool(t, "openssl")
		port, accept := listenOnce(t)
		startChild(t, openssl, "s_client", "-connect", "127.0.0.1:"+port, "-tls1_3",
			"-CAfile", creds.client.CA, "-quiet")
		_, err := Server(context.Background(), accept(), creds.ourServerConfig(true))
		checkSentAlert(t, err, tls13.AlertCertificateRequired)
	})
	t.Run("gnutls-cli/untrusted-server", func(t *testing.T) {
		gnutlsCli := testtool.RequireTool(t, "gnutls-cli")
		other := writeCreds(t, certstest.ECDSAP256) // a CA the client does not trust
		port, accept := listenOnce(t)
		startChild(t, gnutlsCli, "-p", port, "--priority", tls13Only, "--x509cafile", creds.client.CA,
			"--verify-hostname", "localhost", "127.0.0.1")
		_, err := Server(context.Background(), accept(), other.ourServerConfig(false))
		var ae *tls13.AlertError
		if err == nil || !errors.As(err, &ae) || !ae.Received {
			t.Fatalf("err = %v, want a received alert", err)
		}
		t.Logf("gnutls-cli sent %v", ae.Alert)
	})
	t.Run("openssl-s_server/untrusted-client", func(t *testing.T) {
		openssl := testtool.RequireTool(t, "openssl")
		other := writeCreds(t, certstest.ECDSAP256)
		srv := startChild(t, openssl, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev", "-tls1_3",
			"-cert", creds.server.Cert, "-key", creds.server.Key,
			"-Verify", "1", "-verify_return_error", "-CAfile", creds.server.CA)
		port := srv.waitFor(t, `ACCEPT 127\.0\.0\.1:(\d+)`)[1]
		conn := dialPeer(t, "127.0.0.1:"+port)
		cfg := creds.ourClientConfig(false)
		cfg.Certificates = []tls.Certificate{other.p.client.TLS()}
		s := runClient(t, conn, cfg) // TLS 1.3: the client finishes first
		typ, content := newRecordReader(t, conn, s).next()
		if typ != recordTypeAlert || len(content) != 2 {
			t.Fatalf("first record: type %d %x, want an alert", typ, content)
		}
		t.Logf("s_server sent %v", tls13.Alert(content[1]))
	})
}

func checkSentAlert(t *testing.T, err error, a tls13.Alert) {
	t.Helper()
	var ae *tls13.AlertError
	if !errors.As(err, &ae) || ae.Received || ae.Alert != a {
		t.Fatalf("err = %v, want sent alert %v", err, a)
	}
}

// TestInteropSuitesAndGroups: every kTLS suite in both directions (the
// OpenSSL peer restricts the suite), and groups that need a
// HelloRetryRequest from or to crypto/tls.
func TestInteropSuitesAndGroups(t *testing.T) {
	creds := writeCreds(t, certstest.ECDSAP256)
	for _, suite := range tls13.DefaultCipherSuites {
		t.Run("openssl-s_server/"+suite.String(), func(t *testing.T) {
			openssl := testtool.RequireTool(t, "openssl")
			srv := startChild(t, openssl, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev", "-tls1_3",
				"-ciphersuites", suite.String(), "-cert", creds.server.Cert, "-key", creds.server.Key)
			port := srv.waitFor(t, `ACCEPT 127\.0\.0\.1:(\d+)`)[1]
			conn := dialPeer(t, "127.0.0.1:"+port)
			s := runClient(t, conn, creds.ourClientConfig(false))
			if s.Suite != suite {
				t.Fatalf("negotiated %v", s.Suite)
			}
			exchangeEcho(t, conn, s, "suite test\n", "tset etius")
		})
		t.Run("openssl-s_client/"+suite.String(), func(t *testing.T) {
			openssl := testtool.RequireTool(t, "openssl")
			port, accept := listenOnce(t)
			cl := startChild(t, openssl, "s_client", "-connect", "127.0.0.1:"+port, "-servername", "localhost",
				"-tls1_3", "-ciphersuites", suite.String(), "-CAfile", creds.client.CA, "-verify_return_error", "-quiet")
			ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
			defer cancel()
			conn := accept()
			s, err := Server(ctx, conn, creds.ourServerConfig(false))
			if err != nil {
				t.Fatal(err)
			}
			if s.Suite != suite {
				t.Fatalf("negotiated %v", s.Suite)
			}
			io.WriteString(cl.stdin, "ping\n")
			if got, _ := newRecordReader(t, conn, s).readData(); string(got) != "ping\n" {
				t.Fatalf("read %q", got)
			}
			newRecordWriter(t, conn, s).write([]byte("pong\n"))
			cl.waitFor(t, "pong")
		})
	}
	for _, g := range []struct {
		openssl string
		want    tls13.Group
		hrr     bool
	}{
		{"P-256", tls13.P256, true},
		{"P-384", tls13.P384, true},
		{"X25519", tls13.X25519, false},
	} {
		t.Run("openssl-s_server/"+g.openssl, func(t *testing.T) {
			openssl := testtool.RequireTool(t, "openssl")
			srv := startChild(t, openssl, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev", "-tls1_3",
				"-groups", g.openssl, "-cert", creds.server.Cert, "-key", creds.server.Key)
			port := srv.waitFor(t, `ACCEPT 127\.0\.0\.1:(\d+)`)[1]
			conn := dialPeer(t, "127.0.0.1:"+port)
			s := runClient(t, conn, creds.ourClientConfig(false))
			if s.Group != g.want || s.DidHelloRetryRequest != g.hrr {
				t.Fatalf("group %v, HelloRetryRequest %v", s.Group, s.DidHelloRetryRequest)
			}
			exchangeEcho(t, conn, s, "group test\n", "tset puorg")
		})
		t.Run("openssl-s_client/"+g.openssl, func(t *testing.T) {
			openssl := testtool.RequireTool(t, "openssl")
			port, accept := listenOnce(t)
			// The client offers this group only.
			cl := startChild(t, openssl, "s_client", "-connect", "127.0.0.1:"+port, "-servername", "localhost",
				"-tls1_3", "-groups", g.openssl, "-CAfile", creds.client.CA, "-verify_return_error", "-quiet")
			ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
			defer cancel()
			conn := accept()
			s, err := Server(ctx, conn, creds.ourServerConfig(false))
			if err != nil {
				t.Fatal(err)
			}
			if s.Group != g.want {
				t.Fatalf("group %v", s.Group)
			}
			io.WriteString(cl.stdin, "ping\n")
			if got, _ := newRecordReader(t, conn, s).readData(); string(got) != "ping\n" {
				t.Fatalf("read %q", got)
			}
		})
	}
}
