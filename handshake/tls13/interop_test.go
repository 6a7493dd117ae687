package tls13

// Interop with OpenSSL (s_server, s_client) and GnuTLS (gnutls-serv,
// gnutls-cli), the peers NVMe targets and hosts run. Each cell runs our
// engine in process against the real tool, then hands the connection off
// exactly as the daemon does for kTLS and carries application data with a
// record layer built from the handed-off secrets alone: so every cell also
// proves that nothing after the handshake was read, whatever the peer
// sends (OpenSSL and GnuTLS servers send NewSessionTickets).
//
// A cell is skipped when its tool is not installed, unless
// TLSHD_REQUIRE_INTEROP=1 (CI sets it), which turns that into a failure.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// startPeer starts a server tool and waits until its port accepts.
func startPeer(t *testing.T, port int, name string, args ...string) {
	t.Helper()
	out := &testtool.Buffer{}
	cmd := exec.Command(testtool.RequireTool(t, name), args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Stdin = strings.NewReader("")
	if name == "openssl" {
		// s_server quits when its stdin ends; keep it open.
		r, w, _ := os.Pipe()
		cmd.Stdin = r
		t.Cleanup(func() { w.Close(); r.Close() })
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			// A probe connection without a ClientHello: give the tool a
			// moment to drop it before the real one arrives.
			time.Sleep(50 * time.Millisecond)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %d: %v\n%s", name, port, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kernelSide is what kTLS does with a handed-off Session: protect and
// unprotect records with the given secrets from the given sequence
// numbers. It returns application data and counts the other records
// (NewSessionTickets) it had to skip, as kTLS would deliver them.
type kernelSide struct {
	conn    net.Conn
	rx, tx  halfConn
	skipped int
}

func newKernelSide(t *testing.T, conn net.Conn, s *Session) *kernelSide {
	t.Helper()
	k := &kernelSide{conn: conn}
	if err := k.rx.setTrafficSecret(s.Suite, s.RX.Secret); err != nil {
		t.Fatal(err)
	}
	if err := k.tx.setTrafficSecret(s.Suite, s.TX.Secret); err != nil {
		t.Fatal(err)
	}
	k.rx.seq, k.tx.seq = s.RX.Seq, s.TX.Seq
	return k
}

func (k *kernelSide) read() ([]byte, error) {
	k.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(k.conn, hdr); err != nil {
			return nil, err
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(k.conn, body); err != nil {
			return nil, err
		}
		typ, data, err := k.rx.open(hdr, body)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", k.rx.seq, err)
		}
		if typ == recordTypeApplicationData {
			return data, nil
		}
		k.skipped++
	}
}

func (k *kernelSide) write(p []byte) error {
	rec, err := k.tx.seal(nil, recordTypeApplicationData, p, 0)
	if err != nil {
		return err
	}
	_, err = k.conn.Write(rec)
	return err
}

func hexKey(p PSK) string { return hex.EncodeToString(p.Key) }

// pskSessionFile writes the "SSL SESSION PARAMETERS" PEM OpenSSL takes
// with -psk_session: its -psk always binds keys to SHA-256, so this is how
// it gets a SHA-384 PSK.
func pskSessionFile(t *testing.T, p PSK) string {
	t.Helper()
	type sslSession struct {
		Version, SSLVersion int
		Cipher, SessionID   []byte
		MasterKey           []byte
	}
	der, err := asn1.Marshal(sslSession{1, VersionTLS13, []byte{0x13, 0x02}, []byte{}, p.Key})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "psk.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "SSL SESSION PARAMETERS", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientCell runs our client against a server tool on port and checks
// the negotiation; echo says what the server sends back for "ping\n".
func clientCell(t *testing.T, port int, cfg *Config, echo string, want func(*testing.T, Session)) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := Client(conn, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Handshake(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	want(t, c.State())
	s, err := c.Handoff()
	if err != nil {
		t.Fatal(err)
	}
	k := newKernelSide(t, conn, s)
	if err := k.write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	got, err := k.read()
	if err != nil {
		t.Fatalf("reading the echo through handed-off keys: %v", err)
	}
	if string(got) != echo {
		t.Errorf("echo %q, want %q", got, echo)
	}
	t.Logf("%v %v %v; %d post-handshake record(s) left to the kernel", s.Suite, s.Group, s.PSKMode, k.skipped)
}

func wantNegotiated(suite CipherSuite, group Group, mode PSKMode, hrr bool) func(*testing.T, Session) {
	return func(t *testing.T, s Session) {
		t.Helper()
		if s.Suite != suite || s.Group != group || s.PSKMode != mode || s.DidHelloRetryRequest != hrr {
			t.Errorf("negotiated %v %v %v hrr=%v, want %v %v %v hrr=%v",
				s.Suite, s.Group, s.PSKMode, s.DidHelloRetryRequest, suite, group, mode, hrr)
		}
	}
}

func TestInteropClientOpenSSL(t *testing.T) {
	testtool.RequireTool(t, "openssl")
	id := "NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:interop"
	psk := testPSK(id, crypto.SHA256)
	base := []string{"s_server", "-tls1_3", "-nocert", "-rev", "-psk", hexKey(psk), "-psk_identity", id}
	cases := []struct {
		name  string
		args  []string
		cfg   Config
		check func(*testing.T, Session)
	}{
		{"psk_dhe_ke x25519", nil, Config{},
			wantNegotiated(TLS_AES_128_GCM_SHA256, X25519, PSKModeDHE, false)},
		{"psk_dhe_ke secp256r1", []string{"-groups", "P-256"}, Config{Groups: []Group{P256}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, P256, PSKModeDHE, false)},
		{"psk_dhe_ke ffdhe3072", []string{"-groups", "ffdhe3072"}, Config{Groups: []Group{FFDHE3072}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, FFDHE3072, PSKModeDHE, false)},
		{"HRR to secp384r1", []string{"-groups", "P-384"}, Config{Groups: []Group{X25519, P384}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, P384, PSKModeDHE, true)},
		{"HRR to ffdhe2048", []string{"-groups", "ffdhe2048"}, Config{Groups: []Group{X25519, FFDHE2048}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, FFDHE2048, PSKModeDHE, true)},
		{"psk_ke", []string{"-allow_no_dhe_kex"}, Config{PSKModes: []PSKMode{PSKModeKE}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, 0, PSKModeKE, false)},
		{"chacha20", []string{"-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"}, Config{},
			wantNegotiated(TLS_CHACHA20_POLY1305_SHA256, X25519, PSKModeDHE, false)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			port := testtool.FreePort(t)
			startPeer(t, port, "openssl", append(append(base, "-accept", fmt.Sprint(port)), tc.args...)...)
			cfg := tc.cfg
			cfg.PSKs = []PSK{psk}
			clientCell(t, port, &cfg, "gnip\n", tc.check)
		})
	}
	t.Run("SHA-384 via psk_session", func(t *testing.T) {
		psk384 := testPSK("NVMe0R02 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:interop", crypto.SHA384)
		port := testtool.FreePort(t)
		startPeer(t, port, "openssl", "s_server", "-tls1_3", "-nocert", "-rev", "-accept", fmt.Sprint(port),
			"-psk_session", pskSessionFile(t, psk384), "-psk_identity", string(psk384.Identity))
		clientCell(t, port, &Config{PSKs: []PSK{psk384}}, "gnip\n",
			wantNegotiated(TLS_AES_256_GCM_SHA384, X25519, PSKModeDHE, false))
	})
	t.Run("third of three identities", func(t *testing.T) {
		port := testtool.FreePort(t)
		startPeer(t, port, "openssl", append(base, "-accept", fmt.Sprint(port))...)
		psks := []PSK{testPSK("unknown one", crypto.SHA256), testPSK("unknown two", crypto.SHA256), psk}
		clientCell(t, port, &Config{PSKs: psks}, "gnip\n", func(t *testing.T, s Session) {
			if s.PSKIndex != 2 {
				t.Errorf("server chose identity %d, want 2", s.PSKIndex)
			}
		})
	})
	t.Run("wrong key", func(t *testing.T) {
		port := testtool.FreePort(t)
		startPeer(t, port, "openssl", append(base, "-accept", fmt.Sprint(port))...)
		wrong := psk
		wrong.Key = bytes.Repeat([]byte{9}, 32)
		err := clientHandshakeErr(t, port, &Config{PSKs: []PSK{wrong}})
		var ae *AlertError
		if !errors.As(err, &ae) || !ae.Received {
			t.Fatalf("error %v, want an alert from the server", err)
		}
		t.Logf("OpenSSL answers a bad binder with %v", ae.Alert)
	})
}

func clientHandshakeErr(t *testing.T, port int, cfg *Config) error {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Client(conn, cfg).Handshake(ctx)
}

// serverCell accepts one connection from a client tool, hands it off, and
// echoes the client's first line back through the handed-off keys.
func serverCell(t *testing.T, cfg *Config, name string, args func(port int) []string, want func(*testing.T, Session)) {
	t.Helper()
	tool := testtool.RequireTool(t, name)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	cmd := exec.Command(tool, args(port)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
	}()

	l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := Server(conn, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Handshake(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	want(t, s.State())
	sess, err := s.Handoff()
	if err != nil {
		t.Fatal(err)
	}
	k := newKernelSide(t, conn, sess)

	if _, err := io.WriteString(stdin, "hello from "+name+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := k.read()
	if err != nil {
		t.Fatalf("reading through handed-off keys: %v", err)
	}
	if !strings.HasPrefix(string(got), "hello from "+name) {
		t.Fatalf("got %q", got)
	}
	if err := k.write([]byte("echo: " + string(got))); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("client exited without printing the echo")
			}
			if strings.Contains(line, "echo: hello from "+name) {
				return
			}
		case <-timeout:
			t.Fatal("no echo printed by the client")
		}
	}
}

func TestInteropServerOpenSSL(t *testing.T) {
	testtool.RequireTool(t, "openssl")
	id := "NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:interop"
	psk := testPSK(id, crypto.SHA256)
	sclient := func(extra ...string) func(int) []string {
		return func(port int) []string {
			return append([]string{"s_client", "-tls1_3", "-quiet", "-no_ign_eof", "-connect", fmt.Sprintf("127.0.0.1:%d", port),
				"-psk", hexKey(psk), "-psk_identity", id}, extra...)
		}
	}
	t.Run("psk_dhe_ke x25519", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk)}, "openssl", sclient(),
			wantNegotiated(TLS_AES_128_GCM_SHA256, X25519, PSKModeDHE, false))
	})
	t.Run("HRR to secp256r1", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk), Groups: []Group{P256}}, "openssl", sclient("-groups", "X25519:P-256"),
			wantNegotiated(TLS_AES_128_GCM_SHA256, P256, PSKModeDHE, true))
	})
	t.Run("ffdhe3072", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk)}, "openssl", sclient("-groups", "ffdhe3072"),
			wantNegotiated(TLS_AES_128_GCM_SHA256, FFDHE3072, PSKModeDHE, false))
	})
	t.Run("psk_ke", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk), PSKModes: []PSKMode{PSKModeKE}}, "openssl", sclient("-allow_no_dhe_kex"),
			wantNegotiated(TLS_AES_128_GCM_SHA256, 0, PSKModeKE, false))
	})
	t.Run("SHA-384 via psk_session", func(t *testing.T) {
		psk384 := testPSK("NVMe0R02 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:interop", crypto.SHA384)
		file := pskSessionFile(t, psk384)
		serverCell(t, &Config{GetPSK: keyring(psk384)}, "openssl", func(port int) []string {
			return []string{"s_client", "-tls1_3", "-quiet", "-no_ign_eof", "-connect", fmt.Sprintf("127.0.0.1:%d", port),
				"-psk_session", file, "-psk_identity", string(psk384.Identity)}
		}, wantNegotiated(TLS_AES_256_GCM_SHA384, X25519, PSKModeDHE, false))
	})
}

const gnutlsPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL"

func pskPasswdFile(t *testing.T, psks ...PSK) string {
	t.Helper()
	var b strings.Builder
	for _, p := range psks {
		fmt.Fprintf(&b, "%s:%s\n", p.Identity, hexKey(p))
	}
	path := filepath.Join(t.TempDir(), "psk.passwd")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInteropClientGnuTLS(t *testing.T) {
	testtool.RequireTool(t, "gnutls-serv")
	// gnutls-serv's --pskpasswd file splits "identity:key" at the first
	// colon, so identities with colons (NVMe host NQNs have "uuid:") cannot
	// be served by it; this one has none.
	psk := testPSK("NVMe0R01 nqn.2014-08.org.nvmexpress.uuid-f81d4fae nqn.2024-01.io.example.gnutls", crypto.SHA256)
	passwd := pskPasswdFile(t, psk)
	cases := []struct {
		name, priority string
		cfg            Config
		check          func(*testing.T, Session)
	}{
		{"ECDHE-PSK x25519", "+ECDHE-PSK", Config{},
			wantNegotiated(TLS_AES_128_GCM_SHA256, X25519, PSKModeDHE, false)},
		{"PSK (psk_ke)", "+PSK", Config{PSKModes: []PSKMode{PSKModeKE}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, 0, PSKModeKE, false)},
		{"DHE-PSK ffdhe3072", "+DHE-PSK:-GROUP-ALL:+GROUP-FFDHE3072", Config{Groups: []Group{FFDHE3072}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, FFDHE3072, PSKModeDHE, false)},
		{"HRR to secp384r1", "+ECDHE-PSK:-GROUP-ALL:+GROUP-SECP384R1", Config{Groups: []Group{X25519, P384}},
			wantNegotiated(TLS_AES_128_GCM_SHA256, P384, PSKModeDHE, true)},
		{"chacha20", "+ECDHE-PSK:-CIPHER-ALL:+CHACHA20-POLY1305", Config{},
			wantNegotiated(TLS_CHACHA20_POLY1305_SHA256, X25519, PSKModeDHE, false)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			port := testtool.FreePort(t)
			startPeer(t, port, "gnutls-serv", "-p", fmt.Sprint(port), "--echo", "--pskpasswd", passwd,
				"--priority", gnutlsPriority+":"+tc.priority)
			cfg := tc.cfg
			cfg.PSKs = []PSK{psk}
			clientCell(t, port, &cfg, "ping\n", tc.check)
		})
	}
	t.Run("unknown identity", func(t *testing.T) {
		port := testtool.FreePort(t)
		startPeer(t, port, "gnutls-serv", "-p", fmt.Sprint(port), "--echo", "--pskpasswd", passwd,
			"--priority", gnutlsPriority+":+ECDHE-PSK")
		err := clientHandshakeErr(t, port, &Config{PSKs: []PSK{testPSK("not in the passwd file", crypto.SHA256)}})
		var ae *AlertError
		if !errors.As(err, &ae) || !ae.Received {
			t.Fatalf("error %v, want an alert from the server", err)
		}
		t.Logf("GnuTLS answers an unknown identity with %v", ae.Alert)
	})
}

func TestInteropServerGnuTLS(t *testing.T) {
	testtool.RequireTool(t, "gnutls-cli")
	psk := testPSK("NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:gnutls", crypto.SHA256)
	cli := func(priority string) func(int) []string {
		return func(port int) []string {
			return []string{"-p", fmt.Sprint(port), "127.0.0.1", "--pskusername", string(psk.Identity),
				"--pskkey", hexKey(psk), "--priority", gnutlsPriority + ":" + priority}
		}
	}
	t.Run("ECDHE-PSK", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk)}, "gnutls-cli", cli("+ECDHE-PSK"),
			func(t *testing.T, s Session) {
				if s.PSKMode != PSKModeDHE || s.Group == 0 {
					t.Errorf("negotiated %v %v", s.PSKMode, s.Group)
				}
			})
	})
	t.Run("PSK (psk_ke)", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk)}, "gnutls-cli", cli("+PSK"),
			wantNegotiated(TLS_AES_128_GCM_SHA256, 0, PSKModeKE, false))
	})
	t.Run("DHE-PSK ffdhe2048", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk)}, "gnutls-cli", cli("+DHE-PSK:-GROUP-ALL:+GROUP-FFDHE2048"),
			wantNegotiated(TLS_AES_128_GCM_SHA256, FFDHE2048, PSKModeDHE, false))
	})
	t.Run("HRR to secp384r1", func(t *testing.T) {
		serverCell(t, &Config{GetPSK: keyring(psk), Groups: []Group{P384}}, "gnutls-cli", cli("+ECDHE-PSK"),
			wantNegotiated(TLS_AES_128_GCM_SHA256, P384, PSKModeDHE, true))
	})
}
