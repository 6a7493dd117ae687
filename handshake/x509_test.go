package handshake

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// pki is a CA with a server certificate for nfs.example.com and a client
// certificate, written to files a policy can name.
type pki struct {
	dir                      string
	ca                       *certstest.CA
	server, client           *certstest.Leaf
	caFile, srvCert, srvKey  string
	cliCert, cliKey, otherCA string
	revokedCert, revokedKey  string
	crl                      string
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{dir: dir, ca: certstest.NewCA(t, certstest.ECDSAP256, "test CA")}
	p.server = p.ca.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"), certstest.IPs("127.0.0.1"),
		certstest.EKU(x509.ExtKeyUsageServerAuth))
	p.client = p.ca.Leaf(t, certstest.Ed25519, certstest.CN("client"), certstest.DNS("client.example.com"),
		certstest.EKU(x509.ExtKeyUsageClientAuth))
	revoked := p.ca.Leaf(t, certstest.ECDSAP256, certstest.CN("revoked"), certstest.DNS("revoked.example.com"))
	write := func(name string, data []byte) string { return certstest.WriteFile(t, dir, name, data) }
	p.caFile = write("ca.pem", certstest.CertPEM(p.ca.Cert))
	p.srvCert = write("server.pem", certstest.CertPEM(p.server.Chain()...))
	p.srvKey = write("server.key", certstest.KeyPEM(t, p.server.Key))
	p.cliCert = write("client.pem", certstest.CertPEM(p.client.Chain()...))
	p.cliKey = write("client.key", certstest.KeyPEM(t, p.client.Key))
	p.revokedCert = write("revoked.pem", certstest.CertPEM(revoked.Chain()...))
	p.revokedKey = write("revoked.key", certstest.KeyPEM(t, revoked.Key))
	p.crl = write("ca.crl", certstest.CRLPEM(p.ca.CRL(t, revoked.Cert)))
	other := certstest.NewCA(t, certstest.ECDSAP256, "other CA")
	p.otherCA = write("other.pem", certstest.CertPEM(other.Cert))
	return p
}

// policy renders a policy naming the PKI's files, with the client's
// default credential.
func (p *pki) policy(clientExtra, serverExtra string) string {
	return p.policyWith(p.cliCert, p.cliKey, clientExtra, serverExtra)
}

func (p *pki) policyWith(cliCert, cliKey, clientExtra, serverExtra string) string {
	return fmt.Sprintf(`
[client.x509]
trust_anchors = [%q]
certificate = %q
private_key = %q
%s

[server.x509]
trust_anchors = [%q]
certificate = %q
private_key = %q
crl = [%q]
%s
`, p.caFile, cliCert, cliKey, clientExtra, p.caFile, p.srvCert, p.srvKey, p.crl, serverExtra)
}

// x509Pair hands both ends of one connection to the daemon: the NFS
// client and server in one host.
func x509Pair(t testing.TB, td *testDaemon, client, server fakekernel.Params) (fakekernel.Result, fakekernel.Result, int, int) {
	t.Helper()
	cli, srv := consumerPair(t)
	pc := td.fk.Submit(int(cli.Fd()), client)
	ps := td.fk.Submit(int(srv.Fd()), server)
	return wait(t, pc), wait(t, ps), pc.FD(), ps.FD()
}

func TestX509(t *testing.T) {
	p := newPKI(t)
	unauth := fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth, PeerName: "nfs.example.com"}
	mtls := fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.X509, PeerName: "nfs.example.com"}
	server := fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509}

	t.Run("xprtsec=tls", func(t *testing.T) {
		td := newTestDaemon(t, p.policy("", ""))
		td.start()
		rc, rs, fc, fs := x509Pair(t, td, unauth, server)
		if rc.Status != 0 || rs.Status != 0 {
			t.Fatalf("client %+v server %+v\n%s", rc, rs, td.logs)
		}
		if len(rs.RemoteAuth) != 0 {
			t.Errorf("server reported peer id %v without a client certificate", rs.RemoteAuth)
		}
		ctx, _ := ktls.ParseCryptoInfo(td.inst.txInfo(fc))
		srx, _ := ktls.ParseCryptoInfo(td.inst.rxInfo(fs))
		if string(ctx.Key) != string(srx.Key) || ctx.Seq != 0 || srx.Seq != 0 {
			t.Errorf("client TX %+v, server RX %+v", ctx, srx)
		}
	})
	t.Run("xprtsec=mtls", func(t *testing.T) {
		td := newTestDaemon(t, p.policy("", `client_certificate = "required"`))
		td.start()
		rc, rs, _, _ := x509Pair(t, td, mtls, server)
		if rc.Status != 0 || rs.Status != 0 {
			t.Fatalf("client %+v server %+v\n%s", rc, rs, td.logs)
		}
		if len(rs.RemoteAuth) != 1 || rs.RemoteAuth[0] == 0 {
			t.Errorf("server REMOTE_AUTH %v, want a non-zero peer id for NFSD", rs.RemoteAuth)
		}
	})
	t.Run("credentials from the keyring", func(t *testing.T) {
		td := newTestDaemon(t, p.policy("", `client_certificate = "required"`))
		// DER payloads, as the kernel names them by serial.
		td.keys.add(31, "cert", p.client.Cert.Raw)
		keyDER, err := x509.MarshalPKCS8PrivateKey(p.client.Key)
		if err != nil {
			t.Fatal(err)
		}
		td.keys.add(32, "key", keyDER)
		// A policy without client files: only the keyring can supply it.
		td.policy.Store(mustPolicy(t, fmt.Sprintf("[client.x509]\ntrust_anchors = [%q]\n", p.caFile)+
			fmt.Sprintf("[server.x509]\ntrust_anchors = [%q]\ncertificate = %q\nprivate_key = %q\nclient_certificate = \"required\"\n",
				p.caFile, p.srvCert, p.srvKey)))
		td.start()
		withCert := mtls
		withCert.Certificates = []genl.CertPair{{Cert: 31, PrivKey: 32}}
		rc, rs, _, _ := x509Pair(t, td, withCert, server)
		if rc.Status != 0 || rs.Status != 0 || len(rs.RemoteAuth) != 1 {
			t.Fatalf("client %+v server %+v\n%s", rc, rs, td.logs)
		}
	})

	refusals := []struct {
		name                 string
		clientX, serverX     string
		client               fakekernel.Params
		revoked              bool
		wantClient, wantServ syscall.Errno
	}{
		{"wrong server name", "", "", fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth, PeerName: "other.example.com"},
			false, syscall.EACCES, syscall.EACCES},
		{"untrusted server", "", "", unauth, false, syscall.EACCES, syscall.EACCES},
		// TLS 1.3: the client finishes first, so only the server fails;
		// the client learns it from the alert in the kTLS stream.
		{"mtls export, no client certificate", "", `client_certificate = "required"`, unauth,
			false, 0, syscall.EACCES},
		{"revoked client certificate", "", `client_certificate = "required"`, mtls,
			true, 0, syscall.EACCES},
		{"client name not allowed", "", `allowed_names = ["*.trusted.example.com"]`, mtls,
			false, 0, syscall.EACCES},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := p.cliCert, p.cliKey
			if tc.revoked {
				cert, key = p.revokedCert, p.revokedKey
			}
			policy := p.policyWith(cert, key, tc.clientX, tc.serverX)
			if tc.name == "untrusted server" {
				policy = strings.Replace(policy, p.caFile, p.otherCA, 1) // the client's anchors
			}
			td := newTestDaemon(t, policy)
			td.start()
			rc, rs, _, _ := x509Pair(t, td, tc.client, server)
			if rc.Status != tc.wantClient || rs.Status != tc.wantServ {
				t.Errorf("client %v server %v, want %v %v\n%s", rc.Status, rs.Status, tc.wantClient, tc.wantServ, td.logs)
			}
		})
	}

	t.Run("no server certificate", func(t *testing.T) {
		td := newTestDaemon(t, "")
		td.start()
		consumer, _ := socketPair(t)
		r := wait(t, td.fk.Submit(int(consumer.Fd()), server))
		if r.Status != syscall.ENOKEY {
			t.Errorf("status %v, want ENOKEY", r.Status)
		}
	})
	t.Run("unreadable certificate file", func(t *testing.T) {
		// Refused when the policy loads (a reload keeps the old one),
		// not at the handshake.
		os.WriteFile(filepath.Join(p.dir, "broken.pem"), []byte("not PEM"), 0o600)
		_, err := config.Compile([]byte(fmt.Sprintf("[server.x509]\ncertificate = %q\nprivate_key = %q\n",
			filepath.Join(p.dir, "broken.pem"), p.srvKey)), "test.toml")
		if err == nil || !strings.Contains(err.Error(), "test.toml:2: server.x509.certificate") {
			t.Errorf("policy with a broken certificate: %v", err)
		}
	})
}

// TestX509FollowsPolicyGroupsAndSuites: crypto/tls would choose its own
// key exchange (X25519MLKEM768 first) and TLS 1.3 suite; only the
// policy's groups may be used (crypto/tls fixes their order itself), and a
// suite it does not allow must be refused before kTLS.
func TestX509FollowsPolicyGroupsAndSuites(t *testing.T) {
	p := newPKI(t)
	unauth := fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth, PeerName: "nfs.example.com"}
	server := fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509}

	for _, tc := range []struct {
		name, client, server string
		want                 tls13.Group
	}{
		{"defaults leave out the hybrid group", "", "", tls13.X25519},
		{"server allows only secp384r1 (HRR)", "", `groups = ["secp384r1"]`, tls13.P384},
		{"client allows only secp384r1", `groups = ["secp384r1"]`, "", tls13.P384},
		{"hybrid when listed", `groups = ["X25519MLKEM768", "x25519"]`, `groups = ["X25519MLKEM768", "x25519"]`, tls13.X25519MLKEM768},
		{"SecP256r1MLKEM768", `groups = ["SecP256r1MLKEM768"]`, `groups = ["SecP256r1MLKEM768", "x25519"]`, tls13.SecP256r1MLKEM768},
		{"SecP384r1MLKEM1024", `groups = ["SecP384r1MLKEM1024"]`, `groups = ["SecP384r1MLKEM1024"]`, tls13.SecP384r1MLKEM1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDaemon(t, p.policy("", "")+fmt.Sprintf("\n[client]\n%s\n[server]\n%s\n", tc.client, tc.server))
			td.start()
			rc, rs, _, _ := x509Pair(t, td, unauth, server)
			if rc.Status != 0 || rs.Status != 0 {
				t.Fatalf("client %v server %v\n%s", rc.Status, rs.Status, td.logs)
			}
			td.stop(t)
			if !strings.Contains(td.logs.String(), "group="+tc.want.String()) {
				t.Errorf("want group %v in the log:\n%s", tc.want, td.logs)
			}
		})
	}
	t.Run("suite not allowed", func(t *testing.T) {
		// crypto/tls offers and picks AES-128-GCM or ChaCha20; the policy
		// allows only AES-256-GCM on the server.
		td := newTestDaemon(t, p.policy("", "")+"\n[server]\ncipher_suites = [\"TLS_AES_256_GCM_SHA384\"]\n")
		td.start()
		_, rs, _, fs := x509Pair(t, td, unauth, server)
		if rs.Status != syscall.EACCES {
			t.Errorf("server status %v, want EACCES", rs.Status)
		}
		if td.inst.rxInfo(fs) != nil {
			t.Error("keys of a refused session reached kTLS")
		}
	})
	t.Run("ffdhe only", func(t *testing.T) {
		td := newTestDaemon(t, p.policy("", "")+"\n[server]\ngroups = [\"ffdhe3072\"]\n")
		td.start()
		consumer, _ := socketPair(t)
		if r := wait(t, td.fk.Submit(int(consumer.Fd()), server)); r.Status != syscall.EACCES {
			t.Errorf("status %v, want EACCES (policy)", r.Status)
		}
	})
}
