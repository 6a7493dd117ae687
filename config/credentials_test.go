package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
)

// writeCredential writes a CA-issued certificate and its key into dir and
// returns the CA's file too.
func writeCredential(t *testing.T, dir, certName, keyName string) (caFile string) {
	t.Helper()
	ca := certstest.NewCA(t, certstest.ECDSAP256, "config test CA")
	leaf := ca.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"))
	certstest.WriteFile(t, dir, certName, certstest.CertPEM(leaf.Chain()...))
	certstest.WriteFile(t, dir, keyName, certstest.KeyPEM(t, leaf.Key))
	return certstest.WriteFile(t, dir, "ca-"+certName, certstest.CertPEM(ca.Cert))
}

func TestLoadReadsFilesOnce(t *testing.T) {
	dir := t.TempDir()
	ca := writeCredential(t, dir, "s.pem", "s.key")
	f := filepath.Join(dir, "config.toml")
	writeFile(t, f, `
[server.x509]
certificate = "s.pem"
private_key = "s.key"
trust_anchors = ["`+ca+`"]
allowed_names = ["*.example.com"]

[[peer]]
name = "inherits"
match.address = ["192.0.2.0/24"]
`)
	p, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	def := p.Defaults(Server).Credentials()
	rule := p.Resolve(Match{Role: Server, Addr: netip.MustParseAddr("192.0.2.1")})
	if rule.Rule != "inherits" || def == nil || rule.Credentials() == nil {
		t.Fatalf("rule %q, credentials %v %v", rule.Rule, def, rule.Credentials())
	}
	if def.Credential() != rule.Credentials().Credential() {
		t.Error("the same files loaded twice in one generation")
	}
	if len(def.Anchors()) != 1 || def.Names() == nil || def.Credential().Chain()[0].DNSNames[0] != "nfs.example.com" {
		t.Errorf("compiled: anchors %d names %v", len(def.Anchors()), def.Names())
	}
	if p.Defaults(Client).Credentials() == nil || Default().Defaults(Client).Credentials() == nil {
		t.Error("settings without files have no Credentials")
	}

	// A new generation reads the files again: a rotated certificate is
	// picked up by the reload, and the old generation keeps its own.
	writeCredential(t, dir, "s.pem", "s.key")
	p2, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Defaults(Server).Credentials().Credential().Chain()[0].Equal(def.Credential().Chain()[0]) {
		t.Error("the reload did not read the rotated certificate")
	}
}

func TestLoadRefusesBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	writeCredential(t, dir, "s.pem", "s.key")
	writeCredential(t, dir, "other.pem", "other.key")
	os.Mkdir(filepath.Join(dir, "adir"), 0o700)
	f := filepath.Join(dir, "config.toml")
	writeFile(t, f, `[global]
max_concurrent = 8

[server.x509]
certificate = "s.pem"
private_key = "missing.key"

[client.x509]
trust_anchors = ["s.key"]
certificate = "adir"
private_key = "s.key"

[[peer]]
name = "p"
match.role = "server"
x509.crl = ["s.pem", "gone.crl"]
x509.certificate = "s.pem"
x509.private_key = "other.key"
`)
	_, err := Load(f)
	if err == nil {
		t.Fatal("Load accepted broken files")
	}
	msg := err.Error()
	for _, want := range []string{
		"config.toml:6: server.x509.private_key: certs: open " + filepath.Join(dir, "missing.key") + ": no such file",
		"config.toml:9: client.x509.trust_anchors: ", // a key file given as trust anchors
		"config.toml:10: client.x509.certificate: ",  // a directory
		"not a regular file",
		"config.toml:16: peer[0].x509.crl: ", // a certificate as a CRL
		"config.toml:18: peer[0].x509.private_key: ", "does not match",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Error("the error does not wrap ErrNotExist")
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Line == 0 {
		t.Errorf("not a config.Error with a line: %#v", err)
	}
}

// TestLoadTlshdConf: a tlshd.conf is converted, and a broken one gets the
// importer's error, not TOML's.
func TestLoadTlshdConf(t *testing.T) {
	dir := t.TempDir()
	writeCredential(t, dir, "c.pem", "c.key")
	good := filepath.Join(dir, "tlshd.conf")
	writeFile(t, good, "[authenticate.client]\nx509.certificate="+filepath.Join(dir, "c.pem")+
		"\nx509.private_key="+filepath.Join(dir, "c.key")+"\n[debug]\ntls=3\n")
	p, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Converted() || len(p.ImportWarnings()) == 0 || p.Defaults(Client).Credentials().Credential() == nil {
		t.Errorf("converted %v, warnings %q", p.Converted(), p.ImportWarnings())
	}

	bad := filepath.Join(dir, "other.conf")
	writeFile(t, bad, "[authenticate]\nkeyrings=.nvme\nthis line has no equals sign\n")
	_, err = Load(bad)
	if err == nil || strings.Contains(err.Error(), "syntax error") || !strings.Contains(err.Error(), "other.conf:3") {
		t.Errorf("broken tlshd.conf: %v, want the importer's error at line 3", err)
	}

	missing := filepath.Join(dir, "tlshd2", "tlshd.conf")
	os.Mkdir(filepath.Dir(missing), 0o700)
	writeFile(t, missing, "[authenticate.server]\nx509.certificate=/nonexistent/s.pem\nx509.private_key=/nonexistent/s.key\n")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), "tlshd.conf:2: server.x509.certificate") {
		t.Errorf("tlshd.conf naming missing files: %v", err)
	}
}

func TestParseReadsNoFiles(t *testing.T) {
	p, err := Parse([]byte("[server.x509]\ncertificate = \"/nonexistent/a\"\nprivate_key = \"/nonexistent/b\"\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if p.Defaults(Server).Credentials() != nil {
		t.Error("Parse loaded credentials")
	}
	if files := p.Files(); len(files) != 2 || files[0].Kind != FileCertificate || files[0].Line != 2 || files[1].Key != "server.x509.private_key" {
		t.Errorf("Files() = %+v", files)
	}
}

// TestHolderReloadFiles: a reload reads the files again (a rotated
// certificate is picked up), a broken file refuses the reload, and the
// generation a handshake holds never changes.
func TestHolderReloadFiles(t *testing.T) {
	dir := t.TempDir()
	writeCredential(t, dir, "s.pem", "s.key")
	f := filepath.Join(dir, "config.toml")
	writeFile(t, f, "[server.x509]\ncertificate = \"s.pem\"\nprivate_key = \"s.key\"\n")
	p1, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(p1)
	leaf1 := h.Load().Defaults(Server).Credentials().Credential().Chain()[0]

	writeCredential(t, dir, "s.pem", "s.key")
	if err := h.Reload(f); err != nil {
		t.Fatal(err)
	}
	leaf2 := h.Load().Defaults(Server).Credentials().Credential().Chain()[0]
	if leaf2.Equal(leaf1) {
		t.Error("the reload kept the old certificate")
	}
	if !p1.Defaults(Server).Credentials().Credential().Chain()[0].Equal(leaf1) {
		t.Error("the old generation changed")
	}

	writeFile(t, filepath.Join(dir, "s.key"), "garbage")
	err = h.Reload(f)
	if err == nil || !strings.Contains(err.Error(), "config.toml:3: server.x509.private_key") {
		t.Errorf("reload with a broken key: %v", err)
	}
	if !h.Load().Defaults(Server).Credentials().Credential().Chain()[0].Equal(leaf2) {
		t.Error("a broken reload replaced the policy")
	}
}
