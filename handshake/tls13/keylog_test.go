package tls13

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

func TestKeyLog(t *testing.T) {
	psk := testPSK("keylog", crypto.SHA256)
	var clog, slog bytes.Buffer
	r := mustHandshake(t, &Config{PSKs: []PSK{psk}, KeyLogWriter: &clog}, &Config{GetPSK: keyring(psk), KeyLogWriter: &slog})
	if clog.String() != slog.String() {
		t.Errorf("client and server logs differ:\n%s\n%s", clog.String(), slog.String())
	}
	lines := strings.Split(strings.TrimSpace(clog.String()), "\n")
	labels := []string{keyLogClientHandshake, keyLogServerHandshake, keyLogClientTraffic, keyLogServerTraffic}
	if len(lines) != len(labels) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(labels), clog.String())
	}
	s, err := r.client.Handoff()
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != labels[i] || len(f[1]) != 64 {
			t.Fatalf("line %q", line)
		}
		if f[0] == keyLogClientTraffic && f[2] != hex.EncodeToString(s.TX.Secret) {
			t.Errorf("logged client traffic secret is not the one handed off")
		}
		if f[0] == keyLogServerTraffic && f[2] != hex.EncodeToString(s.RX.Secret) {
			t.Errorf("logged server traffic secret is not the one handed off")
		}
	}
}

// TestKeyLogOpenSSL: OpenSSL's s_server -keylogfile logs the same lines
// as our client for one handshake (the format Wireshark reads).
func TestKeyLogOpenSSL(t *testing.T) {
	testtool.RequireTool(t, "openssl")
	id := "NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:interop"
	psk := testPSK(id, crypto.SHA256)
	file := filepath.Join(t.TempDir(), "openssl.keys")
	port := testtool.FreePort(t)
	startPeer(t, port, "openssl", "s_server", "-tls1_3", "-nocert", "-rev", "-psk", hexKey(psk), "-psk_identity", id,
		"-keylogfile", file, "-accept", fmt.Sprint(port))
	var ours bytes.Buffer
	clientCell(t, port, &Config{PSKs: []PSK{psk}, KeyLogWriter: &ours}, "gnip\n", func(*testing.T, Session) {})
	theirs, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, l := range strings.Split(string(theirs), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			want[l] = true
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(ours.String()), "\n") {
		if !want[l] {
			t.Errorf("our line %q is not in OpenSSL's log:\n%s", l, theirs)
		}
	}
}
