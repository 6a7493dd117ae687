package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
	"github.com/tlshd-go/tlshd-go/keyring"
	"github.com/tlshd-go/tlshd-go/systemd"
)

// testPKI is a long-lived CA and a server credential in a directory.
type testPKI struct {
	dir                   string
	ca                    *certstest.CA
	caFile, cert, key     string
	crl                   string
	otherCA               string
	expiredCert, soonCert string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir, ca: certstest.NewLongCA(t, certstest.ECDSAP256, "check CA")}
	year := certstest.Validity(time.Now().Add(-time.Hour), time.Now().Add(200*24*time.Hour))
	leaf := p.ca.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"), year)
	w := func(name string, data []byte) string { return certstest.WriteFile(t, dir, name, data) }
	p.caFile = w("ca.pem", certstest.CertPEM(p.ca.Cert))
	p.cert = w("server.pem", certstest.CertPEM(leaf.Chain()...))
	p.key = w("server.key", certstest.KeyPEM(t, leaf.Key))
	p.crl = w("ca.crl", certstest.CRLPEM(p.ca.CRL(t)))
	p.otherCA = w("other.pem", certstest.CertPEM(certstest.NewLongCA(t, certstest.ECDSAP256, "other CA").Cert))
	expired := p.ca.Leaf(t, certstest.ECDSAP256, certstest.Expired())
	p.expiredCert = w("expired.pem", certstest.CertPEM(expired.Chain()...))
	w("expired.key", certstest.KeyPEM(t, expired.Key))
	soon := p.ca.Leaf(t, certstest.ECDSAP256, certstest.Validity(time.Now().Add(-time.Hour), time.Now().Add(10*24*time.Hour)))
	p.soonCert = w("soon.pem", certstest.CertPEM(soon.Chain()...))
	w("soon.key", certstest.KeyPEM(t, soon.Key))
	return p
}

func (p *testPKI) policy(t *testing.T, text string) string {
	t.Helper()
	return certstest.WriteFile(t, p.dir, "config.toml", []byte(text))
}

// testChecker has no sandbox (test files live under /tmp, which the
// shipped unit hides), every keyring present and room for descriptors.
func testChecker() *checker {
	return &checker{
		now:         time.Now(),
		nofile:      1 << 20,
		findKeyring: func(string) (int32, error) { return 1, nil },
		keyExists:   func(int32) bool { return true },
		defaultPath: "/nonexistent/tlshd-go/config.toml",
	}
}

func runChecker(t *testing.T, c *checker, path string, strict bool) (int, string) {
	t.Helper()
	var out, errb testtool.Buffer
	code := c.run(path, false, strict, &out, &errb)
	return code, errb.String()
}

func wantFindings(t *testing.T, stderr string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("output lacks %q:\n%s", w, stderr)
		}
	}
}

func TestCheckGoodPolicy(t *testing.T) {
	p := newTestPKI(t)
	f := p.policy(t, fmt.Sprintf("[server.x509]\ntrust_anchors = [%q]\ncertificate = %q\nprivate_key = %q\ncrl = [%q]\n",
		p.caFile, p.cert, p.key, p.crl))
	var out, errb testtool.Buffer
	if code := testChecker().run(f, false, true, &out, &errb); code != 0 || errb.String() != "" {
		t.Fatalf("exit %d:\n%s", code, errb.String())
	}
	if _, err := config.Parse([]byte(out.String()), "effective"); err != nil || !strings.Contains(out.String(), "[global]") {
		t.Errorf("effective policy does not parse: %v\n%s", err, out.String())
	}
	// What was loaded, as comments.
	wantFindings(t, out.String(), "#   certificate: "+p.cert+": \"CN=localhost,O=tlshd-go test\", 1 in the chain",
		"#   trust_anchors: "+p.caFile+": 1 certificates", "#   crl: "+p.crl+": 1 lists")
}

// TestCheckReportsEverything: every problem of a file at once, each with
// file:line, and exit 1.
func TestCheckReportsEverything(t *testing.T) {
	p := newTestPKI(t)
	os.Chmod(p.key, 0o644)
	os.Chmod(p.caFile, 0o666)
	f := p.policy(t, fmt.Sprintf(`[global]
max_concurrent = 200
keyrings = [".nvme", "tenant-a"]

[server.x509]
trust_anchors = [%q]
certificate = %q
private_key = %q

[client.x509]
certificate = %q
private_key = %q
crl = [%q]
`, p.caFile, p.cert, p.key, p.expiredCert, filepath.Join(p.dir, "expired.key"), filepath.Join(p.dir, "missing.crl")))
	c := testChecker()
	c.nofile, c.nofileSource = 1024, "LimitNOFILE= in test.service"
	c.findKeyring = func(name string) (int32, error) {
		if name == "tenant-a" {
			return 0, keyring.ErrNotFound
		}
		return 7, nil
	}
	code, stderr := runChecker(t, c, f, false)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantFindings(t, stderr,
		// The load's own refusal; the rest is still checked.
		"config.toml:13: client.x509.crl: certs: open "+filepath.Join(p.dir, "missing.crl")+": no such file",
		// A world-readable key, and the fix.
		"error: "+f+":8: server.x509.private_key: private key "+p.key+" is readable by group and others (mode 0644); fix: chmod go-rwx "+p.key,
		// A world-writable trust anchor.
		"warning: "+f+":6: server.x509.trust_anchors: "+p.caFile+" is writable by group and others",
		// A keyring that is not there.
		"error: "+f+":3: global.keyrings: keyring \"tenant-a\" not found",
		// The descriptor budget.
		"error: "+f+":2: global.max_concurrent: global.max_concurrent = 200 needs 1066 file descriptors",
		"lower max_concurrent to at most 191",
	)
	if strings.Contains(stderr, "\".nvme\"") {
		t.Errorf("a keyring that exists is reported:\n%s", stderr)
	}
	// Errors come before warnings.
	if i, j := strings.Index(stderr, "error:"), strings.Index(stderr, "warning:"); j >= 0 && j < i {
		t.Errorf("a warning before the errors:\n%s", stderr)
	}
}

func TestCheckCertificates(t *testing.T) {
	p := newTestPKI(t)
	for _, tc := range []struct {
		name, x509 string
		now        time.Duration // from now
		code       int           // without --strict
		want       string
	}{
		{"expired", fmt.Sprintf("certificate = %q\nprivate_key = %q\n", p.expiredCert, filepath.Join(p.dir, "expired.key")),
			0, 1, "config.toml:2: server.x509.certificate: certificate \"CN=localhost,O=tlshd-go test\" expired at"},
		{"expires within 30 days", fmt.Sprintf("certificate = %q\nprivate_key = %q\ntrust_anchors = [%q]\n", p.soonCert, filepath.Join(p.dir, "soon.key"), p.caFile),
			0, 0, "warning: " + p.dir + "/config.toml:2: server.x509.certificate: certificate \"CN=localhost,O=tlshd-go test\" expires in 9 days"},
		{"chain does not verify", fmt.Sprintf("certificate = %q\nprivate_key = %q\ntrust_anchors = [%q]\n", p.cert, p.key, p.otherCA),
			0, 0, "does not verify against the configured trust_anchors"},
		{"key does not match", fmt.Sprintf("certificate = %q\nprivate_key = %q\n", p.cert, filepath.Join(p.dir, "soon.key")),
			0, 1, "config.toml:3: server.x509.private_key: certs: " + p.dir + "/soon.key: certs: private key does not match the certificate"},
		{"a key as trust anchor", fmt.Sprintf("trust_anchors = [%q]\n", p.key),
			0, 1, "config.toml:2: server.x509.trust_anchors: certs: " + p.key + ": certs: no certificate"},
		{"CRL past its next update", fmt.Sprintf("crl = [%q]\ntrust_anchors = [%q]\n", p.crl, p.caFile),
			25 * time.Hour, 0, "warning: " + p.dir + "/config.toml:2: server.x509.crl: the CRL of \"CN=check CA,O=tlshd-go test\" was due for renewal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := p.policy(t, "[server.x509]\n"+tc.x509)
			c := testChecker()
			c.now = c.now.Add(tc.now)
			code, stderr := runChecker(t, c, f, false)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			wantFindings(t, stderr, tc.want)
			if tc.code == 0 {
				// A warning fails --strict.
				if code, _ := runChecker(t, testChecker(), f, true); code != 1 && tc.now == 0 {
					t.Errorf("--strict: exit %d, want 1", code)
				}
			}
		})
	}
}

// TestCheckSandbox: the shipped unit hides /tmp (PrivateTmp) and /home
// (ProtectHome), and a symbolic link does not get a file out of sight.
func TestCheckSandbox(t *testing.T) {
	p := newTestPKI(t)
	link := filepath.Join(t.TempDir(), "link.pem")
	sb, err := parseUnit("tlshd-go.service", systemd.Unit)
	if err != nil {
		t.Fatal(err)
	}
	// Only the link's target is hidden, in a sandbox like the shipped one
	// without PrivateTmp.
	sbNoTmp, _ := parseUnit("test.service", systemd.Unit, "[Service]\nPrivateTmp=no\nInaccessiblePaths=-"+p.dir+"\n")
	os.Symlink(p.cert, link)
	f := p.policy(t, fmt.Sprintf("[server.x509]\ncertificate = %q\nprivate_key = %q\n[client.x509]\ntrust_anchors = [\"/home/op/ca.pem\"]\n",
		p.cert, p.key))
	c := testChecker()
	c.sandbox = sb
	code, stderr := runChecker(t, c, f, false)
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	wantFindings(t, stderr,
		f+":2: server.x509.certificate: "+p.cert+" is out of the daemon's sight: PrivateTmp=yes gives the service its own empty /tmp",
		f+":3: server.x509.private_key: "+p.key+" is out of the daemon's sight",
		f+":5: client.x509.trust_anchors: /home/op/ca.pem is out of the daemon's sight: ProtectHome=yes hides /home",
	)

	c = testChecker()
	c.sandbox = sbNoTmp
	f2 := p.policy(t, fmt.Sprintf("[server.x509]\ncertificate = %q\nprivate_key = %q\n", link, p.key))
	_, stderr = runChecker(t, c, f2, false)
	wantFindings(t, stderr, link+" is out of the daemon's sight: it resolves to "+p.cert+", and InaccessiblePaths="+p.dir)
}

func TestParseUnit(t *testing.T) {
	sb, err := parseUnit("u", systemd.Unit)
	if err != nil {
		t.Fatal(err)
	}
	if sb.protectHome != "yes" || !sb.privateTmp || !sb.privateDevices || sb.limitNOFILE == 0 {
		t.Errorf("shipped unit: %+v", sb)
	}
	if sb.hides("/etc/tlshd-go/server.key") != "" || sb.hides("/dev/tpmrm0") == "" {
		t.Error("shipped unit: /etc visible, /dev/tpmrm0 hidden")
	}
	// The TPM drop-in opens the device; later drop-ins override and
	// clear lists.
	sb, _ = parseUnit("u", systemd.Unit, systemd.TPMDropIn,
		"[Service]\nProtectHome=read-only\nPrivateTmp=false\nInaccessiblePaths=/srv/a -/srv/b\nInaccessiblePaths=\nInaccessiblePaths=/srv/c\nLimitNOFILE=1024:4096\nBindReadOnlyPaths=/home/op/certs:/home/op/certs\n")
	if sb.hides("/dev/tpmrm0") != "" || sb.hides("/home/op/x") != "" || sb.hides("/tmp/x") != "" ||
		sb.hides("/srv/a/x") != "" || sb.hides("/srv/c/x") == "" || sb.limitNOFILE != 4096 {
		t.Errorf("drop-ins: %+v", sb)
	}
	sb, _ = parseUnit("u", "[Service]\nProtectHome=yes\nBindReadOnlyPaths=/root/certs:/etc/tlshd-go/certs\nBindPaths=-/home/op/keys\n")
	if sb.hides("/home/op/keys/k.pem") != "" || sb.hides("/root/certs/a") == "" {
		t.Errorf("binds: %+v", sb)
	}
	if _, err := parseUnit("u", "[Service]\nLimitNOFILE=lots\n"); err == nil {
		t.Error("bad LimitNOFILE accepted")
	}
}

// TestCheckDefaults: without a policy file the built-in defaults are
// checked; their keyrings come with kernel modules, so missing ones are
// warnings and the exit is 0.
func TestCheckDefaults(t *testing.T) {
	c := testChecker()
	c.findKeyring = func(string) (int32, error) { return 0, keyring.ErrNotFound }
	code, stderr := runChecker(t, c, "", false)
	if code != 0 {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
	wantFindings(t, stderr, "checking the built-in defaults",
		"warning: global.keyrings (default): keyring \".nvme\" not found: its kernel module creates it")
	c = testChecker()
	c.findKeyring = func(string) (int32, error) { return 0, keyring.ErrNotFound }
	if code, _ := runChecker(t, c, "", true); code != 1 {
		t.Errorf("--strict with warnings: exit %d", code)
	}
}

// TestCheckTlshdConf: `check -c tlshd.conf` converts as the daemon does;
// a broken one gets the importer's error.
func TestCheckTlshdConf(t *testing.T) {
	p := newTestPKI(t)
	f := certstest.WriteFile(t, p.dir, "tlshd.conf", []byte(fmt.Sprintf(
		"[authenticate.server]\nx509.truststore=%s\nx509.certificate=%s\nx509.private_key=%s\n[debug]\nnl=1\n", p.caFile, p.cert, p.key)))
	code, stderr := runChecker(t, testChecker(), f, false)
	if code != 0 {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
	wantFindings(t, stderr, "in tlshd's format: converted as the daemon does", "tlshd.conf:6: [debug] nl: libnl debug level")

	os.Chmod(p.key, 0o640)
	if _, stderr := runChecker(t, testChecker(), f, false); !strings.Contains(stderr, "server.x509.private_key: private key "+p.key+" is readable by its group") {
		t.Errorf("converted key's mode not checked:\n%s", stderr)
	}

	bad := certstest.WriteFile(t, p.dir, "tlshd.conf", []byte("[authenticate]\nkeyrings=.nvme\nno equals sign here\n"))
	code, stderr = runChecker(t, testChecker(), bad, false)
	if code != 1 || strings.Contains(stderr, "syntax error") || !strings.Contains(stderr, "tlshd.conf:3") {
		t.Errorf("broken tlshd.conf: exit %d:\n%s", code, stderr)
	}

	// The daemon loads it the same way, with the same error.
	var logs testtool.Buffer
	if _, err := loadPolicy(bad, newLogger(&logs, nil)); err == nil || strings.Contains(err.Error(), "syntax error") {
		t.Errorf("daemon: %v", err)
	}
	os.Chmod(p.key, 0o600)
	os.WriteFile(f, []byte(fmt.Sprintf("[authenticate.server]\nx509.certificate=%s\nx509.private_key=%s\n", p.cert, p.key)), 0o600)
	pol, err := loadPolicy(f, newLogger(&logs, nil))
	if err != nil || !pol.Converted() || !strings.Contains(logs.String(), "tlshd's format") {
		t.Errorf("daemon: %v, logs %q", err, logs.String())
	}
	if _, err := loadPolicy(t.TempDir()+"/missing.toml", newLogger(&logs, nil)); err == nil {
		t.Error("a missing -c file was accepted")
	}
}

func TestCheckSyntaxErrors(t *testing.T) {
	bad := t.TempDir() + "/bad.toml"
	os.WriteFile(bad, []byte("[global]\nmax_concurrent = 0\ncolour = 1\n"), 0o600)
	code, stderr := runChecker(t, testChecker(), bad, false)
	if code != 1 || !strings.Contains(stderr, "bad.toml:2") || !strings.Contains(stderr, "bad.toml:3") {
		t.Errorf("check of a bad file: %d %q", code, stderr)
	}
	// The example names files only a configured host has: each is
	// reported with its line.
	example, _ := os.ReadFile("../../config/example.toml")
	line := 1 + strings.Count(string(example[:strings.Index(string(example), `certificate = "/etc/tlshd-go/nfs-client.pem"`)]), "\n")
	code, stderr = runChecker(t, testChecker(), "../../config/example.toml", false)
	if code != 1 || !strings.Contains(stderr, fmt.Sprintf("example.toml:%d: peer[1].x509.certificate: certs: open /etc/tlshd-go/nfs-client.pem", line)) {
		t.Errorf("example.toml: %d\n%s", code, stderr)
	}
}

func TestConfigImport(t *testing.T) {
	var out, errb testtool.Buffer
	if code := run([]string{"config", "import", "../../config/testdata/tlshd.conf"}, nil, &out, &errb); code != 0 {
		t.Fatalf("import: %d %s", code, errb.String())
	}
	if _, err := config.Parse([]byte(out.String()), "imported"); err != nil {
		t.Errorf("imported policy does not parse: %v", err)
	}
	if !strings.Contains(errb.String(), "warning:") {
		t.Errorf("no warnings for keys without an equivalent: %q", errb.String())
	}
}

func TestLogLevelFlag(t *testing.T) {
	var errb testtool.Buffer
	if code := run([]string{"--log-level", "loud"}, nil, &testtool.Buffer{}, &errb); code != 2 ||
		!strings.Contains(errb.String(), `unknown log level "loud"`) {
		t.Errorf("--log-level loud: exit %d %q", code, errb.String())
	}
	var f logLevelFlag
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "WARN": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError, "info": slog.LevelInfo} {
		if err := f.Set(in); err != nil || f.level != want || !f.set {
			t.Errorf("%q: %v %v", in, f.level, err)
		}
	}
}

// TestJournalLogger: under systemd each line carries its syslog priority
// and no time, and a multi-line value stays on its line.
func TestJournalLogger(t *testing.T) {
	var buf testtool.Buffer
	log := newJournalLogger(&buf, nil).With("peer", "192.0.2.1")
	log.Error("loading the policy", "err", fmt.Errorf("first line\nsecond line"))
	log.Warn("reload failed")
	log.Info("tlshd-go started")
	log.Debug("hidden at info")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{`<3>level=ERROR msg="loading the policy" peer=192.0.2.1 err="first line\nsecond line"`,
		`<4>level=WARN msg="reload failed" peer=192.0.2.1`, `<6>level=INFO msg="tlshd-go started" peer=192.0.2.1`} {
		if lines[i] != want {
			t.Errorf("line %d: %s\nwant %s", i, lines[i], want)
		}
	}
	if syslogPriority(slog.LevelDebug) != "<7>" || syslogPriority(slog.LevelError+4) != "<3>" {
		t.Error("priorities")
	}
}

func TestIsJournalStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	if !isJournalStream(f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)) {
		t.Error("its own dev:ino not recognised")
	}
	if isJournalStream(f, fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)) || isJournalStream(f, "") || isJournalStream(f, "x") {
		t.Error("another stream taken for the journal")
	}
	// newLogger picks the journal format only for the journal's stream.
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	newLogger(f, nil).Error("boom")
	data, _ := os.ReadFile(f.Name())
	if !strings.HasPrefix(string(data), "<3>level=ERROR") {
		t.Errorf("logged %q", data)
	}
}

func FuzzParseUnit(f *testing.F) {
	f.Add(systemd.Unit)
	f.Add(systemd.TPMDropIn)
	f.Add("[Service]\nInaccessiblePaths=-/a +/b\nBindPaths=/x:/y:rbind\nLimitNOFILE=1:2\nProtectHome=tmpfs\nPrivateTmp=disconnected\nX=\\\n")
	f.Fuzz(func(t *testing.T, text string) {
		sb, err := parseUnit("fuzz", text)
		if err != nil {
			return
		}
		sb.hides("/etc/tlshd-go/k.pem")
		sb.hides("/home/x")
	})
}
