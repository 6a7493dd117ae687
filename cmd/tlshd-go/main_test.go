package main

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/keyring/nvme"
)

// syncBuffer is a bytes.Buffer safe for a command writing while a test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serveOnce runs `tlshd-go serve --once` in the background and waits for
// it to listen.
func serveOnce(t *testing.T, args ...string) (addr string, stderr *syncBuffer, done chan int) {
	t.Helper()
	addr = freeAddr(t)
	stderr = &syncBuffer{}
	done = make(chan int, 1)
	go func() {
		done <- run(append(append([]string{"serve", "--once"}, args...), addr), nil, &syncBuffer{}, stderr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return addr, stderr, done
}

const testID = "NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:0f3a nqn.2024-01.io.example:cli"

func TestConnectServeEcho(t *testing.T) {
	key := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"psk_dhe_ke", nil, "TLS_AES_128_GCM_SHA256, group x25519, psk_dhe_ke"},
		{"psk_ke", []string{"--no-dhe"}, "group none (psk_ke), psk_ke"},
		{"chacha20 ffdhe2048", []string{"--suites", "TLS_CHACHA20_POLY1305_SHA256", "--groups", "ffdhe2048"},
			"TLS_CHACHA20_POLY1305_SHA256, group ffdhe2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--psk-identity", testID, "--psk", key}, tc.extra...)
			addr, serr, done := serveOnce(t, args...)
			var out, cerr syncBuffer
			code := run(append(append([]string{"connect"}, args...), addr), strings.NewReader("hello, target\n"), &out, &cerr)
			if code != 0 {
				t.Fatalf("connect exited %d: %s", code, cerr.String())
			}
			if out.String() != "hello, target\n" {
				t.Errorf("echo %q", out.String())
			}
			if !strings.Contains(cerr.String(), tc.want) {
				t.Errorf("connect said %q, want %q", cerr.String(), tc.want)
			}
			if code := <-done; code != 0 {
				t.Errorf("serve exited %d: %s", code, serr.String())
			}
			if !strings.Contains(serr.String(), "accepted") || !strings.Contains(serr.String(), testID) {
				t.Errorf("serve said %q", serr.String())
			}
		})
	}
}

func TestConnectFailures(t *testing.T) {
	key := strings.Repeat("ab", 32)
	t.Run("wrong key", func(t *testing.T) {
		addr, _, done := serveOnce(t, "--psk-identity", testID, "--psk", key)
		var cerr syncBuffer
		code := run([]string{"connect", "--psk-identity", testID, "--psk", strings.Repeat("cd", 32), addr},
			strings.NewReader(""), &syncBuffer{}, &cerr)
		if code == 0 || !strings.Contains(cerr.String(), "decrypt_error") {
			t.Errorf("exit %d, stderr %q", code, cerr.String())
		}
		<-done
	})
	t.Run("unknown identity", func(t *testing.T) {
		addr, _, done := serveOnce(t, "--psk-identity", testID, "--psk", key)
		var cerr syncBuffer
		code := run([]string{"connect", "--psk-identity", "NVMe0R01 someone else", "--psk", key, addr},
			strings.NewReader(""), &syncBuffer{}, &cerr)
		if code == 0 || !strings.Contains(cerr.String(), "unknown_psk_identity") {
			t.Errorf("exit %d, stderr %q", code, cerr.String())
		}
		<-done
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"connect", "--psk", "zz", "--psk-identity", "x", "127.0.0.1:1"},
			{"connect", "--psk", "00", "127.0.0.1:1"},
			{"connect", "--psk", "00", "--psk-identity", "x", "--hash", "md5", "127.0.0.1:1"},
			{"connect", "--psk", "00", "--psk-identity", "x", "--groups", "x448", "127.0.0.1:1"},
			{"connect", "--psk", "NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:", "--psk-identity", "not nvme", "127.0.0.1:1"},
		} {
			var cerr syncBuffer
			if code := run(args, strings.NewReader(""), &syncBuffer{}, &cerr); code != 1 {
				t.Errorf("%v: exit %d, stderr %q", args, code, cerr.String())
			}
		}
	})
}

// TestInterchangeKey: an NVMe interchange string on one side and the TLS
// PSK it derives, as hex, on the other.
func TestInterchangeKey(t *testing.T) {
	const ic = "NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:"
	parsed, err := nvme.ParseInterchange(ic)
	if err != nil {
		t.Fatal(err)
	}
	id, err := nvme.ParseIdentity(testID)
	if err != nil {
		t.Fatal(err)
	}
	derived := hex.EncodeToString(nvme.TLSPSK(id, nvme.RetainedKey(parsed, id.HostNQN)))
	addr, serr, done := serveOnce(t, "--psk-identity", testID, "--psk", derived)
	var out, cerr syncBuffer
	code := run([]string{"connect", "--psk-identity", testID, "--psk", ic, addr}, strings.NewReader("x"), &out, &cerr)
	if code != 0 || out.String() != "x" {
		t.Fatalf("exit %d out %q: %s / %s", code, out.String(), cerr.String(), serr.String())
	}
	<-done
}

func TestHashDefaults(t *testing.T) {
	for _, tc := range []struct {
		id, hash string
		want     crypto.Hash
	}{
		{"NVMe0R02 h s", "", crypto.SHA384},
		{"NVMe0R01 h s", "", crypto.SHA256},
		{"plain identity", "", crypto.SHA256},
		{"plain identity", "sha384", crypto.SHA384},
	} {
		f := tlsFlags{identity: tc.id, psk: "00112233", hash: tc.hash}
		p, err := f.resolvePSK()
		if err != nil || p.Hash != tc.want {
			t.Errorf("%q %q: %v %v, want %v", tc.id, tc.hash, p, err, tc.want)
		}
	}
}

func TestCheckAndImport(t *testing.T) {
	var out, errb syncBuffer
	if code := run([]string{"check", "-c", "../../config/example.toml"}, nil, &out, &errb); code != 0 {
		t.Fatalf("check example.toml: %d %s", code, errb.String())
	}
	if _, err := config.Parse([]byte(out.String()), "effective"); err != nil || !strings.Contains(out.String(), "[global]") {
		t.Errorf("effective policy does not parse: %v\n%s", err, out.String())
	}

	bad := t.TempDir() + "/bad.toml"
	os.WriteFile(bad, []byte("[global]\nmax_concurrent = 0\ncolour = 1\n"), 0o600)
	errb = syncBuffer{}
	if code := run([]string{"check", "-c", bad}, nil, &syncBuffer{}, &errb); code != 1 ||
		!strings.Contains(errb.String(), "bad.toml:2") || !strings.Contains(errb.String(), "bad.toml:3") {
		t.Errorf("check of a bad file: %d %q", code, errb.String())
	}

	out, errb = syncBuffer{}, syncBuffer{}
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

// TestTlshdConfFallback: "-c /etc/tlshd.conf" keeps working.
func TestTlshdConfFallback(t *testing.T) {
	var logs syncBuffer
	p, err := loadPolicy("../../config/testdata/tlshd.conf", newLogger(&logs, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Global().Keyrings) == 0 || !strings.Contains(logs.String(), "tlshd's format") {
		t.Errorf("policy %+v, logs %q", p.Global(), logs.String())
	}
	if _, err := loadPolicy(t.TempDir()+"/missing.toml", newLogger(&logs, nil)); err == nil {
		t.Error("a missing -c file was accepted")
	}
}

func TestVersion(t *testing.T) {
	var errb syncBuffer
	if code := run([]string{"--version"}, nil, &syncBuffer{}, &errb); code != 0 {
		t.Fatal(code)
	}
	// blktests: tlshd --version |& sed 's/.*utils \([0-9^.]*\).*/\1/'
	line := strings.TrimSpace(errb.String())
	i := strings.LastIndex(line, "utils ")
	if i < 0 || !strings.HasPrefix(line, "tlshd-go ") {
		t.Fatalf("version line %q", line)
	}
	var a, b, c int
	if n, _ := fmt.Sscanf(line[i+6:], "%d.%d.%d", &a, &b, &c); n != 3 || a < 1 {
		t.Errorf("blktests would read %q from %q", line[i+6:], line)
	}
}

func TestDaemonWithoutKernelSupport(t *testing.T) {
	var errb syncBuffer
	if run([]string{"probe"}, nil, &syncBuffer{}, &errb) == 0 {
		t.Skip("this kernel has the handshake family")
	}
	code := run([]string{"-s"}, nil, &syncBuffer{}, &errb)
	if code != 1 || !strings.Contains(errb.String(), "CONFIG_NET_HANDSHAKE") {
		t.Errorf("exit %d, %q", code, errb.String())
	}
}
