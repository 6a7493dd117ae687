package handshake

import (
	"context"
	"crypto/x509"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
)

// staticResolver answers every reverse lookup with names.
func staticResolver(names ...string) func(context.Context, string) ([]string, error) {
	return func(context.Context, string) ([]string, error) { return names, nil }
}

// TestReverseDNSName: an x509 client whose server the kernel named by
// address only verifies the name reverse DNS gives; the server's
// certificate here has that DNS name and no IP address, so only the
// reverse name can verify it.
func TestReverseDNSName(t *testing.T) {
	p := newPKI(t)
	leaf := p.ca.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"), certstest.IPs(), certstest.EKU(x509.ExtKeyUsageServerAuth))
	p.srvCert = certstest.WriteFile(t, p.dir, "dnsonly.pem", certstest.CertPEM(leaf.Chain()...))
	p.srvKey = certstest.WriteFile(t, p.dir, "dnsonly.key", certstest.KeyPEM(t, leaf.Key))
	byAddr := fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth, Timeout: 8 * time.Second}
	server := fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509}
	for _, tc := range []struct {
		name, client string
		resolver     func(context.Context, string) ([]string, error)
		want         syscall.Errno
		log          string
	}{
		{"reverse name verifies", "", staticResolver("nfs.example.com."), 0, "result=ok"},
		{"fallback off", "reverse_dns = false", staticResolver("nfs.example.com."), syscall.EACCES, "result=failed"},
		{"no resolver", "", nil, syscall.EACCES, "result=failed"},
		{"wrong name", "", staticResolver("other.example.com"), syscall.EACCES, "not other.example.com; nor for its address"},
		{"lookup fails", "", func(context.Context, string) ([]string, error) { return nil, &netError{} }, syscall.EACCES, "reverse DNS lookup of the server failed"},
		{"address as PEERNAME (NFS by address)", "", staticResolver("nfs.example.com"), 0, "result=ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDaemon(t, p.policy(tc.client, ""))
			td.LookupAddr = tc.resolver
			td.start()
			params := byAddr
			if strings.Contains(tc.name, "PEERNAME") {
				params.PeerName = "127.0.0.1"
			}
			rc, _, _, _ := x509Pair(t, td, params, server)
			if rc.Status != tc.want {
				t.Errorf("client status %v, want %v\n%s", rc.Status, tc.want, td.logs)
			}
			td.stop(t)
			if !strings.Contains(td.logs.String(), tc.log) {
				t.Errorf("no %q in the log:\n%s", tc.log, td.logs)
			}
		})
	}
	t.Run("PEERNAME wins", func(t *testing.T) {
		td := newTestDaemon(t, p.policy("", ""))
		td.LookupAddr = func(context.Context, string) ([]string, error) {
			t.Error("looked up although the kernel named the server")
			return nil, nil
		}
		td.start()
		named := byAddr
		named.PeerName = "nfs.example.com"
		if rc, _, _, _ := x509Pair(t, td, named, server); rc.Status != 0 {
			t.Errorf("client status %v\n%s", rc.Status, td.logs)
		}
	})
}

type netError struct{}

func (*netError) Error() string { return "lookup 127.0.0.1: no PTR record" }

// TestReverseDNSAddressStillAccepted: the reverse name is added, not
// substituted: a certificate for the address (IP SAN) still verifies when
// reverse DNS gives a name it lacks.
func TestReverseDNSAddressStillAccepted(t *testing.T) {
	p := newPKI(t) // server certificate: nfs.example.com and 127.0.0.1
	td := newTestDaemon(t, p.policy("", ""))
	td.LookupAddr = staticResolver("elsewhere.example.net")
	td.start()
	rc, _, _, _ := x509Pair(t, td, fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth}, fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509})
	if rc.Status != 0 {
		t.Errorf("client status %v\n%s", rc.Status, td.logs)
	}
}

// TestReverseDNSStalls: a resolver that never answers (and ignores its
// context) ends within the bound with a log line, the handshake goes on
// against the address, and other handshakes are served meanwhile.
func TestReverseDNSStalls(t *testing.T) {
	p := newPKI(t)
	td := newTestDaemon(t, p.policy("", ""))
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	td.LookupAddr = func(context.Context, string) ([]string, error) {
		once.Do(func() { close(entered) })
		<-release // never, while the test runs
		return nil, nil
	}
	defer close(release)
	td.keys.add(7, nvmeID, key32(3))
	td.start()

	cli, srv := consumerPair(t)
	pc := td.fk.Submit(int(cli.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth, Timeout: 4 * time.Second})
	ps := td.fk.Submit(int(srv.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509})
	<-entered
	// The lookup hangs: a PSK connection is served in the meantime.
	host, tgt := consumerPair(t)
	ph := td.fk.Submit(int(host.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{7}})
	pt := td.fk.Submit(int(tgt.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{0}})
	if rh, rt := wait(t, ph), wait(t, pt); rh.Status != 0 || rt.Status != 0 {
		t.Fatalf("PSK pair held up: host %+v target %+v\n%s", rh, rt, td.logs)
	}
	select {
	case <-release:
		t.Fatal("unreachable")
	default: // the resolver is still blocked: the PSK pair did not wait for it
	}
	if rc, rs := wait(t, pc), wait(t, ps); rc.Status != 0 || rs.Status != 0 {
		t.Fatalf("x509 client %v server %v\n%s", rc.Status, rs.Status, td.logs)
	}
	td.stop(t)
	if !strings.Contains(td.logs.String(), "reverse DNS lookup of the server timed out") || !strings.Contains(td.logs.String(), "bound=1s") {
		t.Errorf("no time-out line with the bound:\n%s", td.logs)
	}
}

// TestReverseNameIsSNI: the reverse name is what crypto/tls sends.
func TestReverseNameIsSNI(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.7")
	cfg, err := certs.ClientConfig(certs.ClientOptions{PeerAddr: addr, ReverseName: "nfs.example.com."})
	if err != nil || cfg.ServerName != "nfs.example.com" {
		t.Errorf("ServerName %q, %v", cfg.ServerName, err)
	}
	cfg, err = certs.ClientConfig(certs.ClientOptions{PeerName: "named.example.com", PeerAddr: addr, ReverseName: "nfs.example.com"})
	if err != nil || cfg.ServerName != "named.example.com" {
		t.Errorf("with PEERNAME: ServerName %q, %v", cfg.ServerName, err)
	}
	cfg, err = certs.ClientConfig(certs.ClientOptions{PeerName: "192.0.2.7", PeerAddr: addr, ReverseName: "nfs.example.com"})
	if err != nil || cfg.ServerName != "nfs.example.com" {
		t.Errorf("with an address as PEERNAME: ServerName %q, %v", cfg.ServerName, err)
	}
	for n, want := range map[string]bool{"": true, "10.99.0.1": true, "[fe80::1%eth0]": true, "nfs.example.com": false} {
		if namedByAddress(n) != want {
			t.Errorf("namedByAddress(%q) = %v", n, !want)
		}
	}
	if _, err := certs.ClientConfig(certs.ClientOptions{PeerAddr: addr, ReverseName: "192.0.2.8"}); err == nil {
		t.Error("an address from reverse DNS accepted as a name")
	}
}
