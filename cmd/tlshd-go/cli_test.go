package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

func TestHelp(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			var out, errb testtool.Buffer
			code := run(args, nil, &out, &errb)
			if code != 0 {
				t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
			}
			if !strings.Contains(out.String()+errb.String(), "usage: tlshd-go "+c.name) {
				t.Errorf("%v: no usage line in %q", args, out.String()+errb.String())
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		var out testtool.Buffer
		if code := run(args, nil, &out, &testtool.Buffer{}); code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		for _, c := range commands() {
			if !strings.Contains(out.String(), "tlshd-go "+c.name+" ") {
				t.Errorf("%v: top-level usage lacks %s:\n%s", args, c.name, out.String())
			}
		}
	}
}

// TestUsageErrors: a mistake gets one error line and a hint, no usage dump.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"conect", "x"}, `unknown command "conect"`},
		{[]string{"help", "conect"}, `unknown command "conect"`},
		{[]string{"connect", "127.0.0.1:1", "--psk", "00"}, `flag --psk after "127.0.0.1:1"`},
		{[]string{"serve", "--bogus", ":0"}, "flag provided but not defined: -bogus"},
		{[]string{"connect"}, "missing operand"},
		{[]string{"probe", "extra"}, `unexpected argument "extra"`},
		{[]string{"status", "--nope"}, "flag provided but not defined"},
		{[]string{"-s", "stray"}, `unexpected argument "stray"`},
		{[]string{"--bogus"}, "flag provided but not defined"},
		{[]string{"connect", "--psk-identity", "x", "--psk", "00", "--cert", "c.pem", "127.0.0.1:1"}, "do not go together"},
		{[]string{"serve", "--psk-file", "f", "--require-client-cert", ":0"}, "do not go together"},
		{[]string{"connect", "--psk", "00", "--psk-file", "f", "127.0.0.1:1"}, "--psk and --psk-file do not go together"},
	} {
		var out, errb testtool.Buffer
		code := run(tc.args, nil, &out, &errb)
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		if code != 2 || len(lines) != 2 || !strings.Contains(lines[0], tc.want) || !strings.HasPrefix(lines[1], "Run 'tlshd-go ") || out.String() != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, %q and a hint", tc.args, code, out.String(), errb.String(), tc.want)
		}
	}
}

func TestPSKFile(t *testing.T) {
	key := strings.Repeat("ab", 32)
	dir := t.TempDir()
	file := filepath.Join(dir, "psk")
	if err := os.WriteFile(file, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("file", func(t *testing.T) {
		addr, _, done := serveOnce(t, "--psk-identity", testID, "--psk-file", file)
		var out, cerr testtool.Buffer
		code := run([]string{"connect", "--psk-identity", testID, "--psk-file", file, addr}, strings.NewReader("via file"), &out, &cerr)
		if code != 0 || out.String() != "via file" || strings.Contains(cerr.String(), "warning") {
			t.Errorf("exit %d out %q: %s", code, out.String(), cerr.String())
		}
		<-done
	})
	t.Run("stdin", func(t *testing.T) {
		addr, _, done := serveOnce(t, "--psk-identity", testID, "--psk-file", file)
		var out, cerr testtool.Buffer
		// The first line is the key; the rest is the data to send.
		code := run([]string{"connect", "--psk-identity", testID, "--psk-file", "-", addr}, strings.NewReader(key+"\nafter the key\n"), &out, &cerr)
		if code != 0 || out.String() != "after the key\n" {
			t.Errorf("exit %d out %q: %s", code, out.String(), cerr.String())
		}
		<-done
	})
	t.Run("command line warns", func(t *testing.T) {
		addr, _, done := serveOnce(t, "--psk-identity", testID, "--psk-file", file)
		var cerr testtool.Buffer
		code := run([]string{"connect", "--psk-identity", testID, "--psk", key, addr}, strings.NewReader(""), &testtool.Buffer{}, &cerr)
		if code != 0 || !strings.Contains(cerr.String(), "warning: --psk puts the key on the command line") {
			t.Errorf("exit %d: %s", code, cerr.String())
		}
		<-done
	})
	t.Run("readable by others", func(t *testing.T) {
		loose := filepath.Join(dir, "loose")
		os.WriteFile(loose, []byte(key), 0o600)
		os.Chmod(loose, 0o640)
		var cerr testtool.Buffer
		code := run([]string{"connect", "--psk-identity", testID, "--psk-file", loose, "127.0.0.1:1"}, nil, &testtool.Buffer{}, &cerr)
		if code != 1 || !strings.Contains(cerr.String(), "chmod 600 "+loose) || !strings.Contains(cerr.String(), "0640") {
			t.Errorf("exit %d: %s", code, cerr.String())
		}
	})
}

func TestPSKLength(t *testing.T) {
	for _, tc := range []struct {
		key, hash, want string
	}{
		{strings.Repeat("ab", 16), "", "the PSK is 16 bytes; a SHA-256 PSK is 32 bytes"},
		{strings.Repeat("ab", 48), "", "wants --hash sha384"},
		{strings.Repeat("ab", 32), "sha384", "wants --hash sha256"},
	} {
		args := []string{"connect", "--psk-identity", "id", "--psk", tc.key}
		if tc.hash != "" {
			args = append(args, "--hash", tc.hash)
		}
		var cerr testtool.Buffer
		code := run(append(args, "127.0.0.1:1"), nil, &testtool.Buffer{}, &cerr)
		if code != 1 || !strings.Contains(cerr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q, want %q", args, code, cerr.String(), tc.want)
		}
	}
}

// TestProbeReportsEverything: with every feature missing, probe still
// lists each one.
func TestProbeReportsEverything(t *testing.T) {
	sys := systemProber()
	caps := sys.probe()
	names := map[string]bool{}
	for _, c := range caps {
		names[c.Name] = true
	}
	for _, want := range []string{"handshake upcall", "ACCEPT KEYRING attribute", "kTLS TLS_AES_128_GCM_SHA256",
		"kTLS TLS_AES_256_GCM_SHA384", "kTLS TLS_CHACHA20_POLY1305_SHA256", "kTLS rekey (TLS 1.3 KeyUpdate)",
		"kTLS TX max payload", "MPTCP sockets", "kTLS on MPTCP", "keyring .nvme", "keyring .nfs", "keyring .nfsd"} {
		if !names[want] {
			t.Errorf("probe lacks %q: %+v", want, caps)
		}
	}
	var out testtool.Buffer
	run([]string{"probe", "--json"}, nil, &out, &testtool.Buffer{})
	if !strings.Contains(out.String(), `"name": "keyring .nfsd"`) {
		t.Errorf("--json: %s", out.String())
	}
}

func TestKeyringAttrByRelease(t *testing.T) {
	for rel, ok := range map[string]bool{"6.12.38+deb13-amd64": false, "6.17.0": true, "6.18.44-fc-v1294": true, "7.0.1": true, "junk": false} {
		p := prober{kernelRel: func() string { return rel }}
		if err := p.keyringAttr(); (err == nil) != ok {
			t.Errorf("%s: %v", rel, err)
		}
	}
}
