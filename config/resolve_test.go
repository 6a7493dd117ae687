package config

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

const resolvePolicy = `
[global]
handshake_timeout = "7s"

[client]
groups = ["secp384r1"]
timeout = "20s"
x509.trust_anchors = ["/ca/client.pem"]
x509.certificate = "/c/client.pem"
x509.private_key = "/c/client.key"

[server]
cipher_suites = ["TLS_AES_256_GCM_SHA384"]
x509.client_certificate = "required"

# 0: v4 CIDR, servers only
[[peer]]
name = "lab-v4"
groups = ["x25519"]
x509.require_eku = true
[peer.match]
role = "server"
address = ["192.0.2.0/24"]

# 1: v6 CIDR plus an exact v4 address, either role
[[peer]]
name = "lab-v6"
psk_modes = ["psk_ke"]
x509.certificate = ""
x509.private_key = ""
[peer.match]
address = ["2001:db8:1::/48", "198.51.100.7"]

# 2: peer-name glob, clients only; inherits everything else
[[peer]]
name = "nfs"
timeout = "0s"
x509.verify_peer_name = false
[peer.match]
role = "client"
peer_name = "*.NFS.example.com"

# 3: NVMe identity fields
[[peer]]
name = "nvme-host"
auth = ["psk"]
[peer.match]
host_nqn = "nqn.2014-08.org.nvmexpress:uuid:*"
subsys_nqn = "nqn.2024-01.com.example:sub?"

# 4: PSK identity glob
[[peer]]
name = "blocked-id"
reject = true
[peer.match]
psk_identity = "NVMe0R0[12] bad *"

# 5: also matches 192.0.2.0/24 servers, but rule 0 comes first
[[peer]]
name = "shadowed"
reject = true
[peer.match]
address = ["192.0.2.0/25"]
`

func mustParse(t testing.TB, s string) *Policy {
	t.Helper()
	p, err := Parse([]byte(s), testFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolve(t *testing.T) {
	p := mustParse(t, resolvePolicy)
	addr := netip.MustParseAddr
	tests := []struct {
		name string
		m    Match
		rule string
	}{
		{"client default", Match{Role: Client}, ""},
		{"server default", Match{Role: Server, Addr: addr("10.1.1.1")}, ""},
		{"v4 CIDR server", Match{Role: Server, Addr: addr("192.0.2.99")}, "lab-v4"},
		{"v4 CIDR wrong role falls to shadowed", Match{Role: Client, Addr: addr("192.0.2.99")}, "shadowed"},
		{"v4-mapped v6", Match{Role: Server, Addr: addr("::ffff:192.0.2.1")}, "lab-v4"},
		{"v4 outside", Match{Role: Server, Addr: addr("192.0.3.1")}, ""},
		{"v6 CIDR", Match{Role: Client, Addr: addr("2001:db8:1:ffff::5")}, "lab-v6"},
		{"v6 with zone", Match{Role: Client, Addr: addr("2001:db8:1::5%eth0")}, "lab-v6"},
		{"v6 outside", Match{Role: Client, Addr: addr("2001:db8:2::5")}, ""},
		{"exact v4", Match{Role: Server, Addr: addr("198.51.100.7")}, "lab-v6"},
		{"exact v4 miss", Match{Role: Server, Addr: addr("198.51.100.8")}, ""},
		{"no address", Match{Role: Server, PeerName: "x.nfs.example.com"}, ""},
		{"glob case-insensitive", Match{Role: Client, PeerName: "Srv1.nfs.EXAMPLE.com"}, "nfs"},
		{"glob spans dots", Match{Role: Client, PeerName: "a.b.nfs.example.com"}, "nfs"},
		{"glob wrong role", Match{Role: Server, PeerName: "srv1.nfs.example.com"}, ""},
		{"glob miss", Match{Role: Client, PeerName: "nfs.example.com"}, ""},
		{"nqns", Match{Role: Server, HostNQN: "nqn.2014-08.org.nvmexpress:uuid:0f01", SubsysNQN: "nqn.2024-01.com.example:sub1"}, "nvme-host"},
		{"nqns one missing", Match{Role: Server, HostNQN: "nqn.2014-08.org.nvmexpress:uuid:0f01"}, ""},
		{"nqns case-sensitive", Match{Role: Server, HostNQN: "NQN.2014-08.org.nvmexpress:uuid:0f01", SubsysNQN: "nqn.2024-01.com.example:sub1"}, ""},
		{"identity", Match{Role: Server, PSKIdentity: "NVMe0R02 bad nqn.x nqn.y"}, "blocked-id"},
		{"identity class miss", Match{Role: Server, PSKIdentity: "NVMe0R03 bad nqn.x"}, ""},
		{"identity unknown yet", Match{Role: Server}, ""},
		{"first match wins over identity", Match{Role: Server, Addr: addr("192.0.2.5"), PSKIdentity: "NVMe0R01 bad x"}, "lab-v4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := p.Resolve(tt.m)
			if s == nil {
				t.Fatal("Resolve returned nil")
			}
			if s.Rule != tt.rule {
				t.Errorf("Rule = %q, want %q", s.Rule, tt.rule)
			}
			if s.Role != tt.m.Role {
				t.Errorf("Role = %v, want %v", s.Role, tt.m.Role)
			}
		})
	}
}

// TestResolveInheritance checks field-by-field overrides.
func TestResolveInheritance(t *testing.T) {
	p := mustParse(t, resolvePolicy)
	addr := netip.MustParseAddr

	// lab-v4 (server): groups overridden, suites and x509 inherited from
	// [server], require_eku overridden.
	s := p.Resolve(Match{Role: Server, Addr: addr("192.0.2.1")})
	if !slices.Equal(s.Groups, []tls13.Group{tls13.X25519}) {
		t.Errorf("lab-v4 groups = %v", s.Groups)
	}
	if !slices.Equal(s.CipherSuites, []tls13.CipherSuite{tls13.TLS_AES_256_GCM_SHA384}) {
		t.Errorf("lab-v4 suites = %v (want [server]'s)", s.CipherSuites)
	}
	if s.X509.ClientCertificate != ClientCertRequired || !s.X509.RequireEKU {
		t.Errorf("lab-v4 x509 = %+v", s.X509)
	}
	if !slices.Equal(s.PSKModes, []tls13.PSKMode{tls13.PSKModeDHE, tls13.PSKModeKE}) {
		t.Errorf("lab-v4 psk modes = %v (want server default)", s.PSKModes)
	}

	// lab-v6 as a client: clears the certificate, keeps the trust anchors.
	c := p.Resolve(Match{Role: Client, Addr: addr("2001:db8:1::1")})
	if c.X509.Certificate != "" || c.X509.PrivateKey != "" {
		t.Errorf("lab-v6 certificate = %q/%q, want cleared", c.X509.Certificate, c.X509.PrivateKey)
	}
	if !slices.Equal(c.X509.TrustAnchors, []string{"/ca/client.pem"}) {
		t.Errorf("lab-v6 trust anchors = %q", c.X509.TrustAnchors)
	}
	if !slices.Equal(c.Groups, []tls13.Group{tls13.P384}) || c.Timeout != 20*time.Second {
		t.Errorf("lab-v6 client groups %v timeout %v, want [client]'s", c.Groups, c.Timeout)
	}
	if !slices.Equal(c.PSKModes, []tls13.PSKMode{tls13.PSKModeKE}) {
		t.Errorf("lab-v6 psk modes = %v", c.PSKModes)
	}
	// lab-v6 as a server inherits [server], not [client].
	sv := p.Resolve(Match{Role: Server, Addr: addr("2001:db8:1::1")})
	if !slices.Equal(sv.CipherSuites, []tls13.CipherSuite{tls13.TLS_AES_256_GCM_SHA384}) || sv.X509.ClientCertificate != ClientCertRequired {
		t.Errorf("lab-v6 server = %+v", sv)
	}

	// nfs: timeout "0s" removes [client]'s cap; verify_peer_name off.
	n := p.Resolve(Match{Role: Client, PeerName: "a.nfs.example.com"})
	if n.Timeout != 0 || n.X509.VerifyPeerName {
		t.Errorf("nfs = timeout %v verify %v", n.Timeout, n.X509.VerifyPeerName)
	}
	if n.X509.Certificate != "/c/client.pem" {
		t.Errorf("nfs certificate = %q, want inherited", n.X509.Certificate)
	}

	// nvme-host: only PSK allowed.
	h := p.Resolve(Match{Role: Client, HostNQN: "nqn.2014-08.org.nvmexpress:uuid:1", SubsysNQN: "nqn.2024-01.com.example:subA"})
	if h.Rule != "nvme-host" || h.Auth.Allows(AuthX509) || !h.Auth.Allows(AuthPSK) {
		t.Errorf("nvme-host = %q %v", h.Rule, h.Auth.List())
	}

	// The role defaults themselves are unchanged by the peers.
	if d := p.Defaults(Client); d.X509.Certificate != "/c/client.pem" || d.X509.VerifyPeerName != true {
		t.Errorf("client defaults modified: %+v", d.X509)
	}
}

func TestResolveInvalidRole(t *testing.T) {
	p := mustParse(t, resolvePolicy)
	for _, r := range []Role{0, 3, 255} {
		s := p.Resolve(Match{Role: r})
		if s == nil || !s.Reject {
			t.Errorf("Resolve(role %d) = %+v, want a rejecting Settings", r, s)
		}
	}
}

func TestNeedsPSKIdentity(t *testing.T) {
	if !mustParse(t, resolvePolicy).NeedsPSKIdentity() {
		t.Error("policy with psk_identity rules: NeedsPSKIdentity() = false")
	}
	if Default().NeedsPSKIdentity() {
		t.Error("Default().NeedsPSKIdentity() = true")
	}
	p := mustParse(t, "[[peer]]\nname = \"a\"\nmatch.peer_name = \"x\"\n")
	if p.NeedsPSKIdentity() {
		t.Error("peer_name rule: NeedsPSKIdentity() = true")
	}
}

func TestResolveNoAllocs(t *testing.T) {
	p := mustParse(t, resolvePolicy)
	m := Match{Role: Server, Addr: netip.MustParseAddr("2001:db8:9::1"), PeerName: "zzz.example.net",
		PSKIdentity: "NVMe1R01 nqn.a nqn.b abc/def+==", HostNQN: "nqn.a", SubsysNQN: "nqn.b"}
	if n := testing.AllocsPerRun(100, func() { p.Resolve(m) }); n != 0 {
		t.Errorf("Resolve allocates %v times", n)
	}
}

func TestDeadline(t *testing.T) {
	p := mustParse(t, resolvePolicy)
	c := p.Defaults(Client) // timeout 20s, fallback 7s
	s := p.Defaults(Server) // no cap
	for _, tt := range []struct {
		s      *Settings
		kernel time.Duration
		want   time.Duration
	}{
		{c, 0, 7 * time.Second},
		{c, 10 * time.Second, 10 * time.Second},
		{c, 60 * time.Second, 20 * time.Second},
		{s, 0, 7 * time.Second},
		{s, 60 * time.Second, 60 * time.Second},
		{Default().Defaults(Client), 0, 10 * time.Second},
	} {
		if got := tt.s.Deadline(tt.kernel); got != tt.want {
			t.Errorf("%v Deadline(%v) = %v, want %v", tt.s.Role, tt.kernel, got, tt.want)
		}
	}
}

func BenchmarkResolve(b *testing.B) {
	p := mustParse(b, resolvePolicy)
	m := Match{Role: Server, Addr: netip.MustParseAddr("10.9.9.9"), PSKIdentity: "NVMe0R01 nqn.a nqn.b"}
	for b.Loop() {
		p.Resolve(m)
	}
}
