package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

const testFile = "/etc/tlshd-go/config.toml"

// parseExample parses example.toml, whose certificate files exist only
// on a configured host: Parse reads none of them.
func parseExample(t testing.TB) (*Policy, error) {
	t.Helper()
	data, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	return Parse(data, "example.toml")
}

func TestExampleLoads(t *testing.T) {
	p, err := parseExample(t)
	if err != nil {
		t.Fatalf("example.toml: %v", err)
	}
	// The example spells out the defaults; it must agree with them.
	d := Default()
	for _, r := range []Role{Client, Server} {
		got, want := p.Defaults(r), d.Defaults(r)
		if !equalSettings(got, want) {
			t.Errorf("example [%v] = %+v\nwant the defaults %+v", r, got, want)
		}
	}
	if g, w := p.Global(), d.Global(); !slices.Equal(g.Keyrings, w.Keyrings) ||
		g.LogLevel != w.LogLevel || g.MaxConcurrent != w.MaxConcurrent ||
		g.HandshakeTimeout != w.HandshakeTimeout || g.TPMDevice != w.TPMDevice ||
		g.FirstFlightTimeout != w.FirstFlightTimeout || g.DrainTimeout != w.DrainTimeout {
		t.Errorf("example [global] = %+v, want the defaults %+v", g, w)
	}
	if got, want := p.Rules(), []string{"nvme-lab-target", "nfs-home", "nfsd-mtls", "quarantine"}; !slices.Equal(got, want) {
		t.Errorf("Rules() = %q, want %q", got, want)
	}
}

// TestExampleDocumentsEveryKey checks that every key the parser accepts
// appears in example.toml.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	keys := []string{"log_level", "max_concurrent", "keyrings", "handshake_timeout", "tpm_device", "first_flight_timeout", "drain_timeout", "name",
		"role", "peer_name", "address", "psk_identity", "host_nqn", "subsys_nqn", "keylog"}
	keys = append(keys, settingsKeys...)
	keys = append(keys, x509Keys...)
	for _, k := range keys {
		if !strings.Contains(text, k) {
			t.Errorf("example.toml does not mention %q", k)
		}
	}
}

func equalSettings(a, b *Settings) bool {
	return a.Rule == b.Rule && a.Role == b.Role && a.Reject == b.Reject && a.Auth == b.Auth &&
		slices.Equal(a.CipherSuites, b.CipherSuites) && slices.Equal(a.Groups, b.Groups) &&
		slices.Equal(a.PSKModes, b.PSKModes) && a.Timeout == b.Timeout &&
		slices.Equal(a.X509.TrustAnchors, b.X509.TrustAnchors) &&
		a.X509.Certificate == b.X509.Certificate && a.X509.PrivateKey == b.X509.PrivateKey &&
		slices.Equal(a.X509.CRLs, b.X509.CRLs) && a.X509.ClientCertificate == b.X509.ClientCertificate &&
		slices.Equal(a.X509.AllowedNames, b.X509.AllowedNames) && a.X509.RequireEKU == b.X509.RequireEKU &&
		a.X509.VerifyPeerName == b.X509.VerifyPeerName && a.fallback == b.fallback &&
		a.RecordSizeLimit == b.RecordSizeLimit && a.X509.ReverseDNS == b.X509.ReverseDNS
}

func TestDefault(t *testing.T) {
	p := Default()
	g := p.Global()
	if g.LogLevel != slog.LevelInfo || g.MaxConcurrent != 64 || g.HandshakeTimeout != 10*time.Second ||
		g.TPMDevice != "/dev/tpmrm0" ||
		!slices.Equal(g.Keyrings, []Keyring{{Name: ".nvme"}, {Name: ".nfs"}, {Name: ".nfsd"}}) {
		t.Errorf("Default().Global() = %+v", g)
	}
	c, s := p.Defaults(Client), p.Defaults(Server)
	if !slices.Equal(c.PSKModes, []tls13.PSKMode{tls13.PSKModeDHE}) {
		t.Errorf("client psk_modes = %v", c.PSKModes)
	}
	if !slices.Equal(s.PSKModes, []tls13.PSKMode{tls13.PSKModeDHE, tls13.PSKModeKE}) {
		t.Errorf("server psk_modes = %v", s.PSKModes)
	}
	for _, st := range []*Settings{c, s} {
		if slices.Contains(st.Groups, tls13.X25519MLKEM768) {
			t.Errorf("%v default groups contain X25519MLKEM768", st.Role)
		}
		if !slices.Equal(st.CipherSuites, tls13.DefaultCipherSuites) || !slices.Equal(st.Groups, tls13.DefaultGroups) {
			t.Errorf("%v defaults: suites %v groups %v", st.Role, st.CipherSuites, st.Groups)
		}
		if st.Auth != AllAuthModes || st.Reject || st.Timeout != 0 || st.Rule != "" {
			t.Errorf("%v defaults: %+v", st.Role, st)
		}
		if st.X509.ClientCertificate != ClientCertOptional || !st.X509.VerifyPeerName || st.X509.RequireEKU {
			t.Errorf("%v x509 defaults: %+v", st.Role, st.X509)
		}
	}
	// An empty file is the default policy.
	e, err := Parse(nil, "empty.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !equalSettings(e.Defaults(Client), c) || !equalSettings(e.Defaults(Server), s) {
		t.Error("empty file differs from Default()")
	}
}

func TestParseGood(t *testing.T) {
	p, err := Parse([]byte(`
[global]
log_level = "debug"
max_concurrent = 8
keyrings = [".nvme", "12345", 678, "other"]
handshake_timeout = "2500ms"
tpm_device = "/dev/tpmrm1"

[client]
auth = ["psk", "unauth"]
cipher_suites = ["aes_256_gcm_sha384", "TLS_AES_128_GCM_SHA256"]
groups = ["P-384", "X25519MLKEM768"]
psk_modes = ["psk_ke", "psk_dhe_ke"]
timeout = "3s"
x509.trust_anchors = ["ca.pem", "/abs/ca2.pem"]
x509.certificate = "certs/me.pem"
x509.private_key = "keys/../keys/me.key"
x509.crl = ["a.crl"]
x509.allowed_names = ["NFS.Example.COM.", "*.example.org", "10.0.0.0/8", "2001:db8::1",
  "spiffe://td/ns/*", "uri:urn:uuid:1234", "a@Example.com", "@corp.example", "dns:localhost", "ip:192.0.2.7"]
x509.require_eku = true
x509.verify_peer_name = false

[server]
reject = true
x509 = { client_certificate = "required" }
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	g := p.Global()
	if g.LogLevel != slog.LevelDebug || g.MaxConcurrent != 8 || g.HandshakeTimeout != 2500*time.Millisecond ||
		g.TPMDevice != "/dev/tpmrm1" || g.DrainTimeout != 5*time.Second {
		t.Errorf("global = %+v", g)
	}
	// The default first-flight timeout does not fit a 2.5 s handshake:
	// half of it applies.
	if g.FirstFlightTimeout != 1250*time.Millisecond {
		t.Errorf("first_flight_timeout = %v, want 1.25s", g.FirstFlightTimeout)
	}
	p2, err := Parse([]byte("[global]\nfirst_flight_timeout = \"1500ms\"\ndrain_timeout = \"0s\"\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if g := p2.Global(); g.FirstFlightTimeout != 1500*time.Millisecond || g.DrainTimeout != 0 {
		t.Errorf("global = %+v", g)
	}
	if want := []Keyring{{Name: ".nvme"}, {Serial: 12345}, {Serial: 678}, {Name: "other"}}; !slices.Equal(g.Keyrings, want) {
		t.Errorf("keyrings = %v, want %v", g.Keyrings, want)
	}
	c := p.Defaults(Client)
	if c.Auth.Allows(AuthX509) || !c.Auth.Allows(AuthPSK) || !c.Auth.Allows(AuthUnauth) {
		t.Errorf("auth = %v", c.Auth.List())
	}
	if want := []tls13.CipherSuite{tls13.TLS_AES_256_GCM_SHA384, tls13.TLS_AES_128_GCM_SHA256}; !slices.Equal(c.CipherSuites, want) {
		t.Errorf("suites = %v", c.CipherSuites)
	}
	if want := []tls13.Group{tls13.P384, tls13.X25519MLKEM768}; !slices.Equal(c.Groups, want) {
		t.Errorf("groups = %v", c.Groups)
	}
	if want := []tls13.PSKMode{tls13.PSKModeKE, tls13.PSKModeDHE}; !slices.Equal(c.PSKModes, want) {
		t.Errorf("psk modes = %v", c.PSKModes)
	}
	if c.Timeout != 3*time.Second {
		t.Errorf("timeout = %v", c.Timeout)
	}
	x := c.X509
	if want := []string{"/etc/tlshd-go/ca.pem", "/abs/ca2.pem"}; !slices.Equal(x.TrustAnchors, want) {
		t.Errorf("trust anchors = %q", x.TrustAnchors)
	}
	if x.Certificate != "/etc/tlshd-go/certs/me.pem" || x.PrivateKey != "/etc/tlshd-go/keys/me.key" ||
		!slices.Equal(x.CRLs, []string{"/etc/tlshd-go/a.crl"}) || !x.RequireEKU || x.VerifyPeerName {
		t.Errorf("x509 = %+v", x)
	}
	names := x.AllowedNames.Strings()
	want := []string{"dns:nfs.example.com", "dns:*.example.org", "cidr:10.0.0.0/8", "ip:2001:db8::1",
		"uri:spiffe://td/ns/*", "uri:urn:uuid:1234", "email:a@example.com", "email:@corp.example",
		"dns:localhost", "ip:192.0.2.7"}
	if !slices.Equal(names, want) {
		t.Errorf("allowed names = %q\nwant %q", names, want)
	}
	s := p.Defaults(Server)
	if !s.Reject || s.X509.ClientCertificate != ClientCertRequired {
		t.Errorf("server = %+v", s)
	}
}

// TestLoadRelativePaths checks that Load resolves paths against the
// file's directory even when given a relative name.
func TestLoadRelativePaths(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(f, []byte("[server.x509]\ncertificate = \"s.pem\"\nprivate_key = \"s.key\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeCredential(t, dir, "s.pem", "s.key")
	p, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Defaults(Server).X509.Certificate; got != filepath.Join(dir, "s.pem") {
		t.Errorf("certificate = %q", got)
	}
	if p.File() != f {
		t.Errorf("File() = %q", p.File())
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

// badTests each hold a file and the exact error it must produce.
var badTests = []struct {
	name, file, want string
}{
	{"syntax", "[global]\nlog_level = \n", testFile + ":2: syntax error: expected value but found '\\n' instead"},
	{"unknown top-level key", "colour = 1\n", testFile + ":1: colour: unknown key"},
	{"unknown top-level table", "\n[clients]\nx = 1\n", testFile + ":2: clients: unknown key"},
	{"unknown global key", "[global]\nloglevel = \"info\"\n", testFile + ":2: global.loglevel: unknown key"},
	{"unknown client key", "[client]\nciphers = []\n", testFile + ":2: client.ciphers: unknown key"},
	{"unknown server x509 key", "[server.x509]\ntruststore = \"a\"\n", testFile + ":2: server.x509.truststore: unknown key"},
	{"unknown peer key", "[[peer]]\nname = \"a\"\nmath = {}\n", testFile + ":3: peer[0].math: unknown key"},
	{"unknown peer match key", "[[peer]]\nname = \"a\"\n[peer.match]\nrole = \"client\"\nhostname = \"x\"\n",
		testFile + ":5: peer[0].match.hostname: unknown key"},
	{"unknown peer x509 key", "[[peer]]\nname = \"a\"\n[peer.x509]\ncert = \"x\"\n", testFile + ":4: peer[0].x509.cert: unknown key"},
	{"quoted unknown key", "[global]\n\"log level\" = 1\n", testFile + `:2: global."log level": unknown key`},
	{"global not a table", "global = 1\n", testFile + ":1: global: must be a table, not an integer"},
	{"log level", "[global]\nlog_level = \"trace\"\n",
		testFile + `:2: global.log_level: unknown log level "trace" (want debug, info, warn or error)`},
	{"log level type", "[global]\nlog_level = 3\n", testFile + ":2: global.log_level: must be a string, not an integer"},
	{"max_concurrent zero", "[global]\nmax_concurrent = 0\n", testFile + ":2: global.max_concurrent: must be between 1 and 4096"},
	{"max_concurrent big", "[global]\nmax_concurrent = 100000\n", testFile + ":2: global.max_concurrent: must be between 1 and 4096"},
	{"max_concurrent float", "[global]\nmax_concurrent = 1.5\n", testFile + ":2: global.max_concurrent: must be an integer, not a float"},
	{"keyrings not a list", "[global]\nkeyrings = \".nvme\"\n", testFile + ":2: global.keyrings: must be an array, not a string"},
	{"keyring empty", "[global]\nkeyrings = [\".nvme\",\n  \"\"]\n", testFile + `:3: global.keyrings: bad keyring name ""`},
	{"keyring serial", "[global]\nkeyrings = [-4]\n", testFile + ":2: global.keyrings: keyring serial -4 out of range"},
	{"keyring twice", "[global]\nkeyrings = [\"a\", \"a\"]\n", testFile + `:2: global.keyrings: keyring "a" is listed twice`},
	{"keyring bool", "[global]\nkeyrings = [true]\n", testFile + ":2: global.keyrings: keyring must be a name or a serial, not a boolean"},
	{"handshake_timeout", "[global]\nhandshake_timeout = \"10\"\n",
		testFile + `:2: global.handshake_timeout: bad duration "10" (write e.g. "10s" or "1m30s")`},
	{"handshake_timeout zero", "[global]\nhandshake_timeout = \"0s\"\n", testFile + ":2: global.handshake_timeout: must be positive"},
	{"handshake_timeout long", "[global]\nhandshake_timeout = \"1h\"\n", testFile + ":2: global.handshake_timeout: must be at most 10m0s"},
	{"first_flight_timeout zero", "[global]\nfirst_flight_timeout = \"0s\"\n", testFile + ":2: global.first_flight_timeout: must be positive"},
	{"first_flight_timeout too long", "[global]\nhandshake_timeout = \"4s\"\nfirst_flight_timeout = \"4s\"\n",
		testFile + ":3: global.first_flight_timeout: must be shorter than handshake_timeout (4s)"},
	{"drain_timeout", "[global]\ndrain_timeout = \"-1s\"\n", testFile + ":2: global.drain_timeout: must be positive"},
	{"timeout negative", "[client]\ntimeout = \"-1s\"\n", testFile + ":2: client.timeout: must be positive"},
	{"tpm relative", "[global]\ntpm_device = \"tpmrm0\"\n", testFile + `:2: global.tpm_device: must be an absolute path, not "tpmrm0"`},
	{"suite", "[server]\ncipher_suites = [\"TLS_AES_128_CCM_SHA256\"]\n",
		testFile + `:2: server.cipher_suites: unknown cipher suite "TLS_AES_128_CCM_SHA256"`},
	{"suite twice", "[server]\ncipher_suites = [\"TLS_AES_128_GCM_SHA256\", \"AES_128_GCM_SHA256\"]\n",
		testFile + `:2: server.cipher_suites: cipher suite "AES_128_GCM_SHA256" is listed twice`},
	{"suites empty", "[server]\ncipher_suites = []\n", testFile + ":2: server.cipher_suites: must name at least one cipher suite"},
	{"group", "[client]\ngroups = [\"x25519\",\n\t\"x448\"]\n", testFile + `:3: client.groups: unknown group "x448"`},
	{"groups empty", "[client]\ngroups = []\n", testFile + ":2: client.groups: must name at least one group"},
	{"group type", "[client]\ngroups = [25]\n", testFile + ":2: client.groups: group must be a string, not an integer"},
	{"psk mode", "[client]\npsk_modes = [\"psk_dhe\"]\n",
		testFile + `:2: client.psk_modes: unknown PSK mode "psk_dhe" (want psk_dhe_ke or psk_ke)`},
	{"psk modes empty", "[client]\npsk_modes = []\n", testFile + ":2: client.psk_modes: must name at least one PSK mode"},
	{"auth", "[client]\nauth = [\"tls\"]\n", testFile + `:2: client.auth: unknown auth mode "tls" (want any, psk, x509 or unauth)`},
	{"auth empty", "[client]\nauth = []\n",
		testFile + ":2: client.auth: must allow at least one mode (use reject = true to refuse every request)"},
	{"auth any plus", "[client]\nauth = [\"any\", \"psk\"]\n", testFile + `:2: client.auth: "any" cannot be combined with other modes`},
	{"auth twice", "[client]\nauth = [\"psk\", \"psk\"]\n", testFile + `:2: client.auth: auth mode "psk" is listed twice`},
	{"reject type", "[server]\nreject = \"yes\"\n", testFile + ":2: server.reject: must be true or false, not a string"},
	{"x509 not a table", "[server]\nx509 = \"/etc/cert\"\n", testFile + ":2: server.x509: must be a table, not a string"},
	{"cert without key", "[server.x509]\ncertificate = \"a.pem\"\n", testFile + ":1: server.x509: set certificate and private_key together"},
	{"cert empty key set", "[server.x509]\ncertificate = \"\"\nprivate_key = \"k\"\n",
		testFile + ":1: server.x509: certificate and private_key must both be set or both be empty"},
	{"trust anchor empty", "[server.x509]\ntrust_anchors = [\"\"]\n", testFile + ":2: server.x509.trust_anchors: empty path"},
	{"crl type", "[server.x509]\ncrl = \"a.crl\"\n", testFile + ":2: server.x509.crl: must be an array, not a string"},
	{"client_certificate value", "[server.x509]\nclient_certificate = \"always\"\n",
		testFile + `:2: server.x509.client_certificate: unknown value "always" (want none, optional or required)`},
	{"client_certificate on client", "[client.x509]\nclient_certificate = \"required\"\n",
		testFile + ":2: client.x509.client_certificate: applies to servers only"},
	{"verify_peer_name on server", "[server.x509]\nverify_peer_name = false\n",
		testFile + ":2: server.x509.verify_peer_name: applies to clients only"},
	{"require_eku type", "[server.x509]\nrequire_eku = 1\n", testFile + ":2: server.x509.require_eku: must be true or false, not an integer"},
	{"allowed name DNS", "[server.x509]\nallowed_names = [\"bad_name!.example\"]\n",
		testFile + `:2: server.x509.allowed_names: certs: name pattern "bad_name!.example": bad character '!' in DNS name`},
	{"allowed name URN", "[server.x509]\nallowed_names = [\"urn:x\"]\n",
		testFile + `:2: server.x509.allowed_names: certs: name pattern "urn:x": bad character ':' in DNS name (write "uri:urn:x" for a URI)`},
	{"allowed name wildcard", "[server.x509]\nallowed_names = [\"a.*.example\"]\n",
		testFile + `:2: server.x509.allowed_names: certs: name pattern "a.*.example": bad character '*' in DNS name`},
	{"allowed name prefix", "[server.x509]\nallowed_names = [\"ip:10.0.0.1/8\"]\n",
		testFile + `:2: server.x509.allowed_names: certs: name pattern "ip:10.0.0.1/8": address prefix has host bits set (did you mean 10.0.0.0/8?)`},
	{"allowed name email", "[server.x509]\nallowed_names = [\"a b@example.com\"]\n",
		testFile + `:2: server.x509.allowed_names: certs: name pattern "a b@example.com": unsupported local part`},
	{"peer table", "[peer]\nname = \"a\"\n", testFile + ":1: peer: must be an array of tables: write [[peer]], not [peer]"},
	{"peer no name", "[[peer]]\nreject = true\n", testFile + ":1: peer[0]: missing name"},
	{"peer empty name", "[[peer]]\nname = \" \"\n", testFile + ":2: peer[0].name: must not be empty"},
	{"peer duplicate name", "[[peer]]\nname = \"a\"\nmatch.role = \"client\"\n[[peer]]\nname = \"a\"\n",
		testFile + `:5: peer[1].name: "a" is also the name of peer[0]`},
	{"peer unreachable", "[[peer]]\nname = \"all\"\n[[peer]]\nname = \"b\"\nmatch.role = \"server\"\n",
		testFile + `:3: peer[1]: unreachable: peer[0] ("all") has no match fields and matches every request`},
	{"match role", "[[peer]]\nname = \"a\"\nmatch = { role = \"both\" }\n",
		testFile + `:3: peer[0].match.role: unknown role "both" (want client or server)`},
	{"match address", "[[peer]]\nname = \"a\"\n[peer.match]\naddress = [\"10.0.0.0/8\", \"fe80::1%eth0\"]\n",
		testFile + `:4: peer[0].match.address: address "fe80::1%eth0" has a zone`},
	{"match address bad", "[[peer]]\nname = \"a\"\n[peer.match]\naddress = [\"10.0.0.300\"]\n",
		testFile + `:4: peer[0].match.address: bad address "10.0.0.300"`},
	{"match address empty", "[[peer]]\nname = \"a\"\n[peer.match]\naddress = []\n",
		testFile + ":4: peer[0].match.address: empty list matches nothing (leave address out to match any)"},
	{"match glob", "[[peer]]\nname = \"a\"\n[peer.match]\npeer_name = \"[a-\"\n",
		testFile + `:4: peer[0].match.peer_name: bad pattern "[a-": unterminated [ in pattern`},
	{"match glob empty", "[[peer]]\nname = \"a\"\n[peer.match]\nhost_nqn = \"\"\n", testFile + ":4: peer[0].match.host_nqn: empty pattern"},
	{"peer client_certificate for client", "[[peer]]\nname = \"a\"\nmatch.role = \"client\"\nx509.client_certificate = \"none\"\n",
		testFile + ":4: peer[0].x509.client_certificate: applies to servers only"},
	{"peer verify_peer_name for server", "[[peer]]\nname = \"a\"\nmatch.role = \"server\"\nx509.verify_peer_name = true\n",
		testFile + ":4: peer[0].x509.verify_peer_name: applies to clients only"},
}

func TestParseBad(t *testing.T) {
	for _, tt := range badTests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.file), testFile)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			if p != nil {
				t.Error("Parse returned a policy with an error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not an *Error", err)
			}
		})
	}
}

// TestParseBadPeerLines checks that errors in the second and third
// [[peer]] point at their own lines, not the first peer's.
func TestParseBadPeerLines(t *testing.T) {
	file := `# line 1
[[peer]]
name = "a"
groups = ["x25519"]
[peer.match]
role = "client"

[[peer]]
name = "b"
groups = ["x448"]
[peer.match]
role = "server"
colour = "red"

[[peer]]
name = "c"
[peer.match]
role = "client"
[peer.x509]
allowed_names = [
  "ok.example",
  "not ok",
]
`
	_, err := Parse([]byte(file), testFile)
	want := testFile + `:10: peer[1].groups: unknown group "x448"` + "\n" +
		testFile + `:13: peer[1].match.colour: unknown key` + "\n" +
		testFile + `:22: peer[2].x509.allowed_names: certs: name pattern "not ok": bad character ' ' in DNS name`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
	// All errors are *Error values, reachable through Unwrap.
	var u interface{ Unwrap() []error }
	if !errors.As(err, &u) || len(u.Unwrap()) != 3 {
		t.Fatalf("error %T does not unwrap into 3 errors", err)
	}
	for _, e := range u.Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) || ce.Line == 0 || ce.File != testFile {
			t.Errorf("%v: not an *Error with a line", e)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f", Line: 3, Key: "k", Msg: "m"}, "f:3: k: m"},
		{Error{File: "f", Key: "k", Msg: "m"}, "f: k: m"},
		{Error{Line: 3, Key: "k", Msg: "m"}, "line 3: k: m"},
		{Error{Msg: "m"}, "m"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestParentKey(t *testing.T) {
	for in, want := range map[string]string{
		"a.b[2]":            "a.b",
		"a.b":               "a",
		"a":                 "",
		`a."b.c".d`:         `a."b.c"`,
		`a."b\".c"`:         "a",
		"peer[1].match.x":   "peer[1].match",
		"peer[1]":           "peer",
		"[1]":               "",
		"peer[1].groups[0]": "peer[1].groups",
	} {
		if got := parentKey(in); got != want {
			t.Errorf("parentKey(%q) = %q, want %q", in, got, want)
		}
	}
}
