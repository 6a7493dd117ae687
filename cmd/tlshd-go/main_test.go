package main

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
	"github.com/tlshd-go/tlshd-go/keyring"
	"github.com/tlshd-go/tlshd-go/keyring/nvme"
)

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
func serveOnce(t *testing.T, args ...string) (addr string, stderr *testtool.Buffer, done chan int) {
	t.Helper()
	addr = freeAddr(t)
	stderr = &testtool.Buffer{}
	done = make(chan int, 1)
	go func() {
		done <- run(append(append([]string{"serve", "--once"}, args...), addr), nil, &testtool.Buffer{}, stderr)
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
			var out, cerr testtool.Buffer
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
		var cerr testtool.Buffer
		code := run([]string{"connect", "--psk-identity", testID, "--psk", strings.Repeat("cd", 32), addr},
			strings.NewReader(""), &testtool.Buffer{}, &cerr)
		if code == 0 || !strings.Contains(cerr.String(), "decrypt_error") || !strings.Contains(cerr.String(), "hint: the server's PSK differs") {
			t.Errorf("exit %d, stderr %q", code, cerr.String())
		}
		<-done
	})
	t.Run("unknown identity", func(t *testing.T) {
		addr, _, done := serveOnce(t, "--psk-identity", testID, "--psk", key)
		var cerr testtool.Buffer
		code := run([]string{"connect", "--psk-identity", "NVMe0R01 someone else", "--psk", key, addr},
			strings.NewReader(""), &testtool.Buffer{}, &cerr)
		if code == 0 || !strings.Contains(cerr.String(), "unknown_psk_identity") || !strings.Contains(cerr.String(), "hint: the server does not know our PSK identity") {
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
			var cerr testtool.Buffer
			if code := run(args, strings.NewReader(""), &testtool.Buffer{}, &cerr); code != 1 {
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
	var out, cerr testtool.Buffer
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
		key := strings.Repeat("00", tc.want.Size())
		f := tlsFlags{identity: tc.id, psk: key, hash: tc.hash}
		p, err := f.resolvePSK()
		if err != nil || p.Hash != tc.want {
			t.Errorf("%q %q: %v %v, want %v", tc.id, tc.hash, p, err, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	var errb testtool.Buffer
	if code := run([]string{"--version"}, nil, &testtool.Buffer{}, &errb); code != 0 {
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
	var errb testtool.Buffer
	if run([]string{"probe"}, nil, &testtool.Buffer{}, &errb) == 0 {
		t.Skip("this kernel has the handshake family")
	}
	code := run([]string{"-s"}, nil, &testtool.Buffer{}, &errb)
	if code != 1 || !strings.Contains(errb.String(), "CONFIG_NET_HANDSHAKE") {
		t.Errorf("exit %d, %q", code, errb.String())
	}
}

func TestConnectServeX509(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, certstest.ECDSAP256, "cli CA")
	srv := ca.Leaf(t, certstest.ECDSAP256, certstest.DNS("nfs.example.com"), certstest.IPs("127.0.0.1"))
	cli := ca.Leaf(t, certstest.Ed25519, certstest.CN("cli client"), certstest.DNS("client.example.com"))
	w := func(name string, b []byte) string { return certstest.WriteFile(t, dir, name, b) }
	caFile := w("ca.pem", certstest.CertPEM(ca.Cert))
	srvCert, srvKey := w("srv.pem", certstest.CertPEM(srv.Chain()...)), w("srv.key", certstest.KeyPEM(t, srv.Key))
	cliCert, cliKey := w("cli.pem", certstest.CertPEM(cli.Chain()...)), w("cli.key", certstest.KeyPEM(t, cli.Key))

	t.Run("mutual", func(t *testing.T) {
		addr, serr, done := serveOnce(t, "--cert", srvCert, "--key", srvKey, "--ca", caFile, "--require-client-cert")
		var out, cerr testtool.Buffer
		code := run([]string{"connect", "--ca", caFile, "--cert", cliCert, "--key", cliKey,
			"--servername", "nfs.example.com", addr}, strings.NewReader("over x509\n"), &out, &cerr)
		if code != 0 || out.String() != "over x509\n" {
			t.Fatalf("exit %d out %q: %s", code, out.String(), cerr.String())
		}
		if <-done != 0 || !strings.Contains(serr.String(), "cli client") {
			t.Errorf("serve: %s", serr.String())
		}
	})
	t.Run("IP address as the name", func(t *testing.T) {
		addr, _, done := serveOnce(t, "--cert", srvCert, "--key", srvKey)
		var cerr testtool.Buffer
		if code := run([]string{"connect", "--ca", caFile, addr}, strings.NewReader(""), &testtool.Buffer{}, &cerr); code != 0 {
			t.Errorf("exit %d: %s", code, cerr.String())
		}
		<-done
	})
	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name           string
			serve, connect []string
		}{
			{"wrong server name", []string{"--cert", srvCert, "--key", srvKey},
				[]string{"--ca", caFile, "--servername", "other.example.com"}},
			{"untrusted server", []string{"--cert", srvCert, "--key", srvKey},
				[]string{"--x509", "--servername", "nfs.example.com"}},
			{"no client certificate", []string{"--cert", srvCert, "--key", srvKey, "--ca", caFile, "--require-client-cert"},
				[]string{"--ca", caFile, "--servername", "nfs.example.com"}},
		} {
			hint := map[string]string{
				"wrong server name":     "hint: the server's certificate is not for this name",
				"untrusted server":      "hint: the server's certificate does not chain to our trust anchors",
				"no client certificate": "hint: the server requires a client certificate",
			}[tc.name]
			t.Run(tc.name, func(t *testing.T) {
				addr, _, done := serveOnce(t, tc.serve...)
				var out, cerr testtool.Buffer
				code := run(append(append([]string{"connect"}, tc.connect...), addr), strings.NewReader("x"), &out, &cerr)
				// In TLS 1.3 a client learns of a rejected certificate
				// only on its first read: the exit status says so then.
				if code == 0 {
					t.Errorf("connect succeeded: %s", cerr.String())
				}
				// connect waits for the server's verdict before it says
				// "connected".
				if strings.Contains(cerr.String(), "connected to") || !strings.Contains(cerr.String(), hint) {
					t.Errorf("stderr %q, want no \"connected\" and %q", cerr.String(), hint)
				}
				if sc := <-done; sc == 0 {
					t.Errorf("serve's handshake succeeded")
				}
			})
		}
	})
}

// TestPSKFromKeyring: --psk key:SERIAL reads the key from the kernel
// keyring and takes the identity from its description.
func TestPSKFromKeyring(t *testing.T) {
	key := bytes.Repeat([]byte{0x5a}, 32)
	var serial keyring.Serial
	done := make(chan error, 1)
	go func() {
		// In the user keyring, which every thread reaches through the
		// user session keyring (a session keyring made now would belong
		// to this thread only).
		runtime.LockOSThread()
		var err error
		serial, err = keyring.Add("user", testID, key, keyring.User)
		done <- err
	}()
	if err := <-done; err != nil {
		t.Skipf("no keyring here: %v", err)
	}
	defer keyring.Unlink(serial, keyring.User)
	addr, serr, sdone := serveOnce(t, "--psk-identity", testID, "--psk", hex.EncodeToString(key))
	var out, cerr testtool.Buffer
	code := run([]string{"connect", "--psk", fmt.Sprintf("key:%d", serial), addr}, strings.NewReader("from the keyring"), &out, &cerr)
	if code != 0 || out.String() != "from the keyring" || !strings.Contains(cerr.String(), testID) {
		t.Fatalf("exit %d out %q: %s / %s", code, out.String(), cerr.String(), serr.String())
	}
	<-sdone
}

// bigEcho sends n bytes of varied data through connect to a serve and
// checks the echo.
func bigEcho(t *testing.T, serveArgs, connectArgs []string, n int) string {
	t.Helper()
	addr, serr, done := serveOnce(t, serveArgs...)
	data := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz"), n/36+1)[:n]
	var out, cerr testtool.Buffer
	code := run(append(append([]string{"connect"}, connectArgs...), addr), bytes.NewReader(data), &out, &cerr)
	if code != 0 || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("exit %d, %d of %d bytes echoed: %s / %s", code, len(out.Bytes()), n, cerr.String(), serr.String())
	}
	if sc := <-done; sc != 0 {
		t.Errorf("serve exited %d: %s", sc, serr.String())
	}
	return cerr.String()
}

func TestKeyUpdatesUserspace(t *testing.T) {
	psk := []string{"--psk-identity", testID, "--psk", strings.Repeat("ab", 32)}
	// Both sides update every 1000 bytes they write: many updates each
	// way, with data in flight across them.
	bigEcho(t, append(psk, "--key-update-bytes", "1000"), append(psk, "--key-update-bytes", "1000"), 50000)
}

// TestConnectServeKTLS moves the data through kernel TLS after the
// handshake, with KeyUpdates where the kernel can (6.14+). It needs the
// tls module; tests/vm runs it on Debian's kernels.
func TestConnectServeKTLS(t *testing.T) {
	stat, err := os.ReadFile("/proc/net/tls_stat")
	if err != nil {
		t.Skip("no kTLS on this kernel (the tls module is not loaded); tests/vm runs this test on real kernels")
	}
	psk := []string{"--psk-identity", testID, "--psk", strings.Repeat("ab", 32), "--ktls"}
	bigEcho(t, psk, psk, 100000)
	if !strings.Contains(string(stat), "TlsTxRekeyOk") {
		t.Log("no kTLS rekey on this kernel (before 6.14): key updates not tried")
		return
	}
	upd := append(psk, "--key-update-bytes", "4096")
	msg := bigEcho(t, upd, upd, 100000)
	if !strings.Contains(msg, "key updates: 24 sent") {
		t.Errorf("want 24 key updates sent by connect (100000/4096): %s", msg)
	}
}

// TestReleaseStartupPages: the test binary keeps working (its GC walks
// pointers in read-only data) after the daemon's start-up page release,
// which must leave relocated RELRO pages of a PIE alone.
func TestReleaseStartupPages(t *testing.T) {
	releaseStartupPages()
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v %T", map[string]int{"x": 1}, t)
	if b.Len() == 0 {
		t.Fatal("formatting after release")
	}
}
