package stdtls

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

var keyTypes = []certstest.KeyType{certstest.ECDSAP256, certstest.RSA2048, certstest.Ed25519}

type result struct {
	s   *tls13.Session
	err error
}

// pair runs Client and Server against each other over loopback TCP.
func pair(t *testing.T, ccfg, scfg *tls.Config) (client, server result, cconn, sconn *net.TCPConn) {
	t.Helper()
	cconn, sconn = testtool.TCPPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := make(chan result, 1)
	go func() {
		s, err := Server(ctx, sconn, scfg)
		ch <- result{s, err}
	}()
	cs, cerr := Client(ctx, cconn, ccfg)
	if cerr != nil {
		// A failing client may leave the server waiting for a flight
		// that never comes.
		cconn.CloseWrite()
	}
	server = <-ch
	return result{cs, cerr}, server, cconn, sconn
}

func TestClientServer(t *testing.T) {
	for _, kt := range keyTypes {
		t.Run(kt.String(), func(t *testing.T) {
			p := newPKI(t, kt)
			scfg := p.mtlsServerConfig()
			c, s, cconn, sconn := pair(t, p.mtlsClientConfig(), scfg)
			if c.err != nil || s.err != nil {
				t.Fatalf("client: %v, server: %v", c.err, s.err)
			}
			if !c.s.IsClient || s.s.IsClient {
				t.Errorf("IsClient: client %v, server %v", c.s.IsClient, s.s.IsClient)
			}
			if c.s.Suite != s.s.Suite || c.s.Group != s.s.Group || !c.s.Suite.Supported() || c.s.Group == 0 {
				t.Errorf("suite %v/%v, group %v/%v", c.s.Suite, s.s.Suite, c.s.Group, s.s.Group)
			}
			if !bytes.Equal(c.s.TX.Secret, s.s.RX.Secret) || !bytes.Equal(c.s.RX.Secret, s.s.TX.Secret) ||
				bytes.Equal(c.s.TX.Secret, c.s.RX.Secret) {
				t.Error("client and server secrets do not pair up")
			}
			for _, x := range []*tls13.Session{c.s, s.s} {
				if x.TX.Seq != 0 || x.RX.Seq != 0 {
					t.Errorf("sequence numbers %d/%d, want 0/0", x.TX.Seq, x.RX.Seq)
				}
				if len(x.TX.Secret) != x.Suite.Hash().Size() {
					t.Errorf("secret length %d for %v", len(x.TX.Secret), x.Suite)
				}
			}
			if len(c.s.PeerCertificates) != 1 || !bytes.Equal(c.s.PeerCertificates[0], p.server.Cert.Raw) {
				t.Error("client: wrong peer certificates")
			}
			if len(s.s.PeerCertificates) != 1 || !bytes.Equal(s.s.PeerCertificates[0], p.client.Cert.Raw) {
				t.Error("server: wrong peer certificates")
			}
			if len(c.s.VerifiedChains) == 0 || len(s.s.VerifiedChains) == 0 {
				t.Error("no verified chains")
			}
			if c.s.ServerName != "localhost" || s.s.ServerName != "localhost" {
				t.Errorf("server names %q, %q", c.s.ServerName, s.s.ServerName)
			}

			// kTLS stand-ins, both ways, at sequence 0.
			newRecordWriter(t, cconn, c.s).write([]byte("ping"))
			if got, _ := newRecordReader(t, sconn, s.s).readData(); string(got) != "ping" {
				t.Errorf("server read %q", got)
			}
			newRecordWriter(t, sconn, s.s).write([]byte("pong"))
			if got, _ := newRecordReader(t, cconn, c.s).readData(); string(got) != "pong" {
				t.Errorf("client read %q", got)
			}
			c.s.Zero()
			if !bytes.Equal(c.s.TX.Secret, make([]byte, len(c.s.TX.Secret))) {
				t.Error("Zero left the secret")
			}
		})
	}
}

// TestServerLeavesClientData: a crypto/tls client writes application data
// right after its Finished; the server reads slowly, so the data is in the
// socket while the server reads the Finished. Afterwards it must still be
// there, and open under the server's RX secret at sequence 0; the
// server's first record under TX at sequence 0 must be readable by the
// crypto/tls client.
func TestServerLeavesClientData(t *testing.T) {
	for _, mtls := range []bool{false, true} {
		name := "server-auth"
		if mtls {
			name = "mutual"
		}
		t.Run(name, func(t *testing.T) {
			p := newPKI(t, certstest.ECDSAP256)
			ccfg, scfg := p.clientConfig(), p.serverConfig()
			if mtls {
				ccfg, scfg = p.mtlsClientConfig(), p.mtlsServerConfig()
			}
			ccfg.SessionTicketsDisabled = true
			cconn, sconn := testtool.TCPPair(t)
			errc := make(chan error, 1)
			tc := tls.Client(cconn, ccfg)
			go func() {
				if err := tc.Handshake(); err != nil {
					errc <- err
					return
				}
				_, err := tc.Write([]byte("first"))
				if err == nil {
					_, err = tc.Write([]byte("second"))
				}
				errc <- err
			}()
			s, err := Server(context.Background(), slowConn{sconn, 20 * time.Millisecond}, scfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			r := newRecordReader(t, sconn, s)
			for _, want := range []string{"first", "second"} {
				got, tickets := r.readData()
				if string(got) != want || tickets != 0 {
					t.Fatalf("read %q (after %d tickets), want %q", got, tickets, want)
				}
			}
			newRecordWriter(t, sconn, s).write([]byte("reply"))
			buf := make([]byte, 16)
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := tc.Read(buf)
			if err != nil || string(buf[:n]) != "reply" {
				t.Fatalf("crypto/tls client read %q, %v", buf[:n], err)
			}
		})
	}
}

// injectConn plays a server that sends a NewSessionTicket and 0.5-RTT
// application data in the same segment as its Finished, as OpenSSL and
// GnuTLS servers do (the ticket) and a server may (the data): when a
// crypto/tls server flushes its flight, the records are appended,
// protected with the server's first application secret, which crypto/tls
// has logged by then.
type injectConn struct {
	net.Conn
	kl       *captureKeyLog
	suite    tls13.CipherSuite
	injected bool
}

func (c *injectConn) Write(p []byte) (int, error) {
	if c.suite == 0 && len(p) > 5+4+2+32+1 && p[0] == recordTypeHandshake && p[5] == 2 {
		// ServerHello: header, msg header, version, random, session id.
		sid := int(p[5+4+2+32])
		off := 5 + 4 + 2 + 32 + 1 + sid
		c.suite = tls13.CipherSuite(uint16(p[off])<<8 | uint16(p[off+1]))
	}
	secret := c.kl.secret(labelServerTraffic)
	if c.injected || secret == nil {
		return c.Conn.Write(p)
	}
	c.injected = true
	ticket := []byte{4, 0, 0, 33, // NewSessionTicket, length 33
		0, 0, 0x1c, 0x20, // lifetime
		1, 2, 3, 4, // age add
		1, 0, // nonce
		0, 16, // ticket
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
		0, 0} // extensions
	r1, err := sealRecord(c.suite, secret, 0, recordTypeHandshake, ticket)
	if err != nil {
		return 0, err
	}
	r2, err := sealRecord(c.suite, secret, 1, recordTypeApplicationData, []byte("half-rtt"))
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(append(append(bytes.Clone(p), r1...), r2...))
	return min(n, len(p)), err
}

func TestClientLeavesServerRecords(t *testing.T) {
	p := newPKI(t, certstest.ECDSAP256)
	cconn, sconn := testtool.TCPPair(t)
	kl := new(captureKeyLog)
	scfg := p.serverConfig()
	scfg.KeyLogWriter = kl
	scfg.SessionTicketsDisabled = true
	ts := tls.Server(&injectConn{Conn: sconn, kl: kl}, scfg)
	errc := make(chan error, 1)
	go func() { errc <- ts.Handshake() }()

	s, err := Client(context.Background(), cconn, p.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got, tickets := newRecordReader(t, cconn, s).readData()
	if string(got) != "half-rtt" || tickets != 1 {
		t.Fatalf("read %q after %d tickets, want %q after 1", got, tickets, "half-rtt")
	}
	newRecordWriter(t, cconn, s).write([]byte("client data"))
	buf := make([]byte, 32)
	ts.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := ts.Read(buf)
	if err != nil || string(buf[:n]) != "client data" {
		t.Fatalf("crypto/tls server read %q, %v", buf[:n], err)
	}
}

// TestGetConfigForClient: a config returned by GetConfigForClient is
// restricted too (here it would otherwise allow TLS 1.2 and tickets).
func TestGetConfigForClient(t *testing.T) {
	p := newPKI(t, certstest.ECDSAP256)
	inner := p.serverConfig()
	inner.MinVersion = tls.VersionTLS12
	called := false
	scfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		called = true
		return inner, nil
	}}
	c, s, cconn, sconn := pair(t, p.clientConfig(), scfg)
	if c.err != nil || s.err != nil {
		t.Fatalf("client: %v, server: %v", c.err, s.err)
	}
	if !called || inner.KeyLogWriter != nil {
		t.Fatal("GetConfigForClient not called, or its config modified")
	}
	newRecordWriter(t, sconn, s.s).write([]byte("x"))
	if got, tickets := newRecordReader(t, cconn, c.s).readData(); string(got) != "x" || tickets != 0 {
		t.Fatalf("read %q after %d tickets", got, tickets)
	}
}

// checkAlerts asserts that one side sent alert a and the other received it.
func checkAlerts(t *testing.T, sent, received error, a tls13.Alert) *tls13.AlertError {
	t.Helper()
	var se, re *tls13.AlertError
	if !errors.As(sent, &se) || se.Received || se.Alert != a {
		t.Fatalf("sender error = %v (%#v), want sent alert %v", sent, se, a)
	}
	if !errors.As(received, &re) || !re.Received || re.Alert != a {
		t.Fatalf("receiver error = %v (%#v), want received alert %v", received, re, a)
	}
	return se
}

func TestClientVerificationErrors(t *testing.T) {
	p := newPKI(t, certstest.ECDSAP256)
	other := certstest.NewCA(t, certstest.ECDSAP256, "other CA")
	tests := []struct {
		name   string
		server *certstest.Leaf
		sni    string
		check  func(error) bool
	}{
		{"unknown CA", other.Leaf(t, certstest.ECDSAP256), "localhost", func(err error) bool {
			var e x509.UnknownAuthorityError
			return errors.As(err, &e)
		}},
		{"expired", p.ca.Leaf(t, certstest.ECDSAP256, certstest.Expired()), "localhost", func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
		{"name mismatch", p.server, "nfs.example.com", func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}},
		{"IP mismatch", p.server, "192.0.2.1", func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ccfg := p.clientConfig()
			ccfg.ServerName = tt.sni
			scfg := &tls.Config{Certificates: []tls.Certificate{tt.server.TLS()}}
			c, s, _, _ := pair(t, ccfg, scfg)
			// crypto/tls clients send bad_certificate for every
			// verification failure.
			checkAlerts(t, c.err, s.err, tls13.AlertBadCertificate)
			var cve *tls.CertificateVerificationError
			if !tt.check(c.err) || !errors.As(c.err, &cve) {
				t.Errorf("client error %v does not wrap the x509 error", c.err)
			}
		})
	}
}

func TestServerVerificationErrors(t *testing.T) {
	p := newPKI(t, certstest.ECDSAP256)
	other := certstest.NewCA(t, certstest.ECDSAP256, "other CA")
	errPolicy := errors.New("policy says no")
	tests := []struct {
		name    string
		client  *certstest.Leaf // nil: no certificate
		verify  func(tls.ConnectionState) error
		alert   tls13.Alert
		wrapped func(error) bool
	}{
		{"unknown CA", other.Leaf(t, certstest.ECDSAP256), nil, tls13.AlertUnknownCA, func(err error) bool {
			var e x509.UnknownAuthorityError
			return errors.As(err, &e)
		}},
		{"expired", p.ca.Leaf(t, certstest.ECDSAP256, certstest.Expired()), nil, tls13.AlertCertificateExpired, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
		{"wrong EKU", p.ca.Leaf(t, certstest.ECDSAP256, certstest.EKU(x509.ExtKeyUsageServerAuth)), nil, tls13.AlertBadCertificate, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.IncompatibleUsage
		}},
		{"missing", nil, nil, tls13.AlertCertificateRequired, func(error) bool { return true }},
		{"VerifyConnection", p.client, func(tls.ConnectionState) error { return errPolicy }, tls13.AlertBadCertificate, func(err error) bool {
			return errors.Is(err, errPolicy)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ccfg := p.clientConfig()
			if tt.client != nil {
				// Send it even if its issuer is not in the
				// server's certificate_authorities.
				cert := tt.client.TLS()
				ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return &cert, nil
				}
			}
			scfg := p.mtlsServerConfig()
			scfg.VerifyConnection = tt.verify
			c, s, cconn, _ := pair(t, ccfg, scfg)
			// TLS 1.3: the client is done before the server has
			// looked at its certificate.
			if c.err != nil {
				t.Fatalf("client: %v", c.err)
			}
			var ae *tls13.AlertError
			if !errors.As(s.err, &ae) || ae.Received || ae.Alert != tt.alert {
				t.Fatalf("server error = %v, want sent alert %v", s.err, tt.alert)
			}
			if !tt.wrapped(s.err) {
				t.Errorf("server error %v does not wrap the cause", s.err)
			}
			// The alert is the first record kTLS would read.
			typ, content := newRecordReader(t, cconn, c.s).next()
			if typ != recordTypeAlert || len(content) != 2 || tls13.Alert(content[1]) != tt.alert {
				t.Errorf("client's first record: type %d, content %x", typ, content)
			}
		})
	}
}

// TestPlaintextAlert: a server without a certificate fails before any
// key is in place, with a plaintext alert.
func TestPlaintextAlert(t *testing.T) {
	p := newPKI(t, certstest.ECDSAP256)
	c, s, _, _ := pair(t, p.clientConfig(), &tls.Config{})
	a := checkAlerts(t, s.err, c.err, tls13.AlertUnrecognizedName)
	if a.Err == nil {
		t.Error("sent alert without a cause")
	}
}

func TestPeerClosesMidHandshake(t *testing.T) {
	p := newPKI(t, certstest.ECDSAP256)
	t.Run("client", func(t *testing.T) {
		cconn, sconn := testtool.TCPPair(t)
		go func() {
			buf := make([]byte, 100)
			sconn.Read(buf) // part of the ClientHello
			sconn.Close()
		}()
		_, err := Client(context.Background(), cconn, p.clientConfig())
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
		var ae *tls13.AlertError
		if errors.As(err, &ae) {
			t.Errorf("err = %v is an alert", err)
		}
	})
	t.Run("server", func(t *testing.T) {
		cconn, sconn := testtool.TCPPair(t)
		go func() {
			// Half a ClientHello, then FIN.
			cconn.Write([]byte{22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3})
			cconn.CloseWrite()
		}()
		_, err := Server(context.Background(), sconn, p.serverConfig())
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("server before ClientHello", func(t *testing.T) {
		cconn, sconn := testtool.TCPPair(t)
		cconn.CloseWrite()
		_, err := Server(context.Background(), sconn, p.serverConfig())
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
}

func TestContext(t *testing.T) {
	p := newPKI(t, certstest.ECDSAP256)
	t.Run("deadline", func(t *testing.T) {
		cconn, sconn := testtool.TCPPair(t) // the server never answers
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Client(ctx, cconn, p.clientConfig())
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded and os.ErrDeadlineExceeded", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v", d)
		}
		checkUsable(t, cconn, sconn)
	})
	t.Run("cancel", func(t *testing.T) {
		cconn, sconn := testtool.TCPPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := Server(ctx, sconn, p.serverConfig())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		checkUsable(t, sconn, cconn)
	})
	t.Run("conn deadline", func(t *testing.T) {
		cconn, _ := testtool.TCPPair(t)
		cconn.SetDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := Client(context.Background(), cconn, p.clientConfig())
		if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want os.ErrDeadlineExceeded only", err)
		}
	})
	t.Run("success clears deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cconn, sconn := testtool.TCPPair(t)
		go Server(ctx, sconn, p.serverConfig())
		if _, err := Client(ctx, cconn, p.clientConfig()); err != nil {
			t.Fatal(err)
		}
		cancel()
		time.Sleep(20 * time.Millisecond)
		checkUsable(t, cconn, sconn)
	})
}

// checkUsable asserts that conn was neither closed nor left with a
// deadline: the daemon still owns the socket after a failed handshake.
func checkUsable(t *testing.T, conn, peer net.Conn) {
	t.Helper()
	if _, err := conn.Write([]byte("!")); err != nil {
		t.Fatalf("conn unusable after the handshake: %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		peer.Write([]byte("?"))
	}()
	// Bounded, so that a peer left unable to write fails the test
	// instead of hanging it (that is how a late crypto/tls Close showed).
	done := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("conn unusable after the handshake: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no byte from the peer in 10 s: its side of the socket was left unusable")
	}
}

func TestNilConfig(t *testing.T) {
	cconn, _ := testtool.TCPPair(t)
	if _, err := Client(context.Background(), cconn, nil); err == nil {
		t.Fatal("no error")
	}
}

// TestRecordConnBoundaries feeds a stream of records through recordConn
// with reads larger than any record, and checks that no read crosses a
// boundary.
func TestRecordConnBoundaries(t *testing.T) {
	var stream []byte
	var ends []int
	for _, n := range []int{0, 1, 100, 4000, 16640, 7} {
		stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
		stream = append(stream, make([]byte, n)...)
		ends = append(ends, len(stream))
	}
	a, b := net.Pipe()
	go func() { a.Write(stream); a.Close() }()
	rc := newRecordConn(b)
	pos := 0
	buf := make([]byte, 1<<16)
	for {
		n, err := rc.Read(buf)
		pos += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		// pos must not jump over a record end or into the next header.
		for _, e := range ends {
			if pos-n < e && pos > e {
				t.Fatalf("read of %d bytes crossed the record end at %d", n, e)
			}
		}
	}
	if pos != len(stream) {
		t.Fatalf("read %d of %d bytes", pos, len(stream))
	}
}

func TestWriteTracker(t *testing.T) {
	var w writeTracker
	plain := []byte{22, 3, 3, 0, 3, 1, 2, 3}
	enc := []byte{23, 3, 3, 0, 19}
	enc = append(enc, bytes.Repeat([]byte{9}, 19)...)
	big := append([]byte{23, 3, 3, 1, 0}, make([]byte, 256)...)
	stream := append(append(append(bytes.Clone(plain), big...), enc...), 20, 3, 3, 0, 1, 1)
	stream = append(stream, enc...)
	// Feed it in awkward pieces.
	for i := 0; i < len(stream); i += 3 {
		w.track(stream[i:min(i+3, len(stream))])
	}
	rec, encrypted, ok := w.lastRecord()
	if !ok || encrypted != 3 || !bytes.Equal(rec, enc) {
		t.Fatalf("lastRecord = %x, %d, %v", rec, encrypted, ok)
	}
	w.track([]byte{23, 3})
	if _, _, ok := w.lastRecord(); ok {
		t.Fatal("incomplete record reported")
	}
}

func TestKeyLogParse(t *testing.T) {
	var k keyLog
	random := bytes.Repeat([]byte("ab"), 32)
	k.Write([]byte("CLIENT_TRAFFIC_SECRET_0 " + string(random) + " 00112233\n"))
	k.Write([]byte("EXPORTER_SECRET " + string(random) + " 4455\n"))
	k.Write([]byte("SERVER_TRAFFIC_SECRET_0 " + string(random) + " 8899\n"))
	if !bytes.Equal(k.clientAP, []byte{0, 0x11, 0x22, 0x33}) || !bytes.Equal(k.serverAP, []byte{0x88, 0x99}) || k.malformed {
		t.Fatalf("parsed %x, %x, malformed %v", k.clientAP, k.serverAP, k.malformed)
	}
	k.Write([]byte("SERVER_HANDSHAKE_TRAFFIC_SECRET " + string(random) + " 8zz9\n"))
	if !k.malformed {
		t.Error("bad hex accepted")
	}
	k.zero()
	if k.clientAP != nil || k.serverAP != nil {
		t.Error("zero left secrets")
	}
}

func FuzzKeyLog(f *testing.F) {
	f.Add([]byte("CLIENT_TRAFFIC_SECRET_0 abcd 00112233\n"))
	f.Add([]byte("SERVER_HANDSHAKE_TRAFFIC_SECRET  \n"))
	f.Add([]byte("CLIENT_HANDSHAKE_TRAFFIC_SECRET x y z"))
	f.Fuzz(func(t *testing.T, line []byte) {
		var k keyLog
		n, err := k.Write(line)
		if n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	})
}

func FuzzRecordConn(f *testing.F) {
	f.Add([]byte{23, 3, 3, 0, 2, 1, 2, 22, 3, 3, 0, 0}, uint8(7))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		a, b := net.Pipe()
		go func() {
			for i := 0; i < len(stream); i += int(chunk) + 1 {
				a.Write(stream[i:min(i+int(chunk)+1, len(stream))])
			}
			a.Close()
		}()
		rc := newRecordConn(b)
		var got []byte
		buf := make([]byte, 1<<17)
		for {
			n, err := rc.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("recordConn changed the stream")
		}
		var w writeTracker
		w.track(stream)
	})
}

func TestRecordRoundTrip(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	for _, s := range []tls13.CipherSuite{tls13.TLS_AES_128_GCM_SHA256, tls13.TLS_CHACHA20_POLY1305_SHA256} {
		rec, err := sealRecord(s, secret, 5, recordTypeAlert, []byte{2, 42})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := openRecord(s, secret, 4, rec); err == nil {
			t.Fatal("opened at the wrong sequence number")
		}
		typ, content, err := openRecord(s, secret, 5, rec)
		if err != nil || typ != recordTypeAlert || !bytes.Equal(content, []byte{2, 42}) {
			t.Fatalf("%v: %d %x %v", s, typ, content, err)
		}
	}
}
