package tls13

import (
	"context"
	"crypto"
	"crypto/tls"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

var hybridGroups = []Group{X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024}

func TestHybridHandshakes(t *testing.T) {
	psk := testPSK("hybrid", crypto.SHA256)
	for _, g := range hybridGroups {
		t.Run(g.String(), func(t *testing.T) {
			r := mustHandshake(t, &Config{PSKs: []PSK{psk}, Groups: []Group{g}}, &Config{GetPSK: keyring(psk), Groups: []Group{g}})
			if s := r.client.State(); s.Group != g || s.PSKMode != PSKModeDHE {
				t.Errorf("client negotiated %v %v", s.Group, s.PSKMode)
			}
			exchange(t, r)
		})
		t.Run(g.String()+" after HRR", func(t *testing.T) {
			r := mustHandshake(t, &Config{PSKs: []PSK{psk}, Groups: []Group{X25519, g}}, &Config{GetPSK: keyring(psk), Groups: []Group{g}})
			if s := r.server.State(); s.Group != g || !s.DidHelloRetryRequest {
				t.Errorf("server negotiated %v hrr=%v", s.Group, s.DidHelloRetryRequest)
			}
			exchange(t, r)
		})
	}
}

func TestParseHybridGroups(t *testing.T) {
	for name, want := range map[string]Group{
		"SecP256r1MLKEM768": SecP256r1MLKEM768, "secp384r1mlkem1024": SecP384r1MLKEM1024, "X25519MLKEM768": X25519MLKEM768,
	} {
		if g, err := ParseGroup(name); err != nil || g != want {
			t.Errorf("ParseGroup(%q) = %v, %v", name, g, err)
		}
	}
	if uint16(SecP256r1MLKEM768) != 0x11eb || uint16(SecP384r1MLKEM1024) != 0x11ed {
		t.Error("code points differ from the IANA registry")
	}
}

// TestHybridSharesAgainstCryptoTLS checks the share layout against an
// independent implementation: Go's crypto/tls client offers each hybrid,
// and our server side must accept its key share. With the ECDH and ML-KEM
// halves swapped, the point or the encapsulation key would not parse.
// Then our client's share, fed back the other way, must have the layout
// crypto/tls sends (a valid point where crypto/tls puts it).
func TestHybridSharesAgainstCryptoTLS(t *testing.T) {
	ids := map[Group]tls.CurveID{X25519MLKEM768: tls.X25519MLKEM768, SecP256r1MLKEM768: tls.SecP256r1MLKEM768, SecP384r1MLKEM1024: tls.SecP384r1MLKEM1024}
	for _, g := range hybridGroups {
		t.Run(g.String(), func(t *testing.T) {
			cc, sc := net.Pipe()
			defer sc.Close()
			go func() {
				c := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{ids[g]}})
				c.Handshake()
				cc.Close()
			}()
			sc.SetDeadline(time.Now().Add(10 * time.Second))
			hdr := make([]byte, 5)
			if _, err := io.ReadFull(sc, hdr); err != nil {
				t.Fatal(err)
			}
			body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
			if _, err := io.ReadFull(sc, body); err != nil {
				t.Fatal(err)
			}
			var ch clientHello
			if err := ch.unmarshal(body); err != nil {
				t.Fatal(err)
			}
			var theirs []byte
			for _, ks := range ch.keyShares {
				if ks.group == g {
					theirs = ks.data
				}
			}
			if theirs == nil {
				t.Fatalf("crypto/tls sent no %v share", g)
			}
			if _, _, err := serverKeyExchange(g, theirs, nil); err != nil {
				t.Fatalf("crypto/tls's %v share: %v", g, err)
			}
			_, ours, err := newClientKey(g, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ours) != len(theirs) {
				t.Fatalf("our share has %d bytes, crypto/tls's %d", len(ours), len(theirs))
			}
			// The ECDH half: X25519 last for X25519MLKEM768, the point
			// (0x04, uncompressed) first for the NIST hybrids.
			if g != X25519MLKEM768 && (ours[0] != 4 || theirs[0] != 4) {
				t.Errorf("share does not start with an uncompressed point: ours %#x, crypto/tls %#x", ours[0], theirs[0])
			}
		})
	}
}

func TestHybridBadShares(t *testing.T) {
	for _, g := range []Group{SecP256r1MLKEM768, SecP384r1MLKEM1024} {
		k, share, err := newClientKey(g, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := serverKeyExchange(g, share[:len(share)-1], nil); err == nil {
			t.Errorf("%v: short client share accepted", g)
		}
		bad := append([]byte{}, share...)
		bad[0] = 2 // a compressed point
		if _, _, err := serverKeyExchange(g, bad, nil); err == nil {
			t.Errorf("%v: client share with a compressed point accepted", g)
		}
		srv, shared, err := serverKeyExchange(g, share, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.finish(srv[1:]); err == nil {
			t.Errorf("%v: short server share accepted", g)
		}
		got, err := k.finish(srv)
		if err != nil || string(got) != string(shared) {
			t.Errorf("%v: secrets differ (%v)", g, err)
		}
		// ECDH secret (x coordinate) and ML-KEM's 32 bytes.
		if want := map[Group]int{SecP256r1MLKEM768: 32 + 32, SecP384r1MLKEM1024: 48 + 32}[g]; len(shared) != want {
			t.Errorf("%v: shared secret of %d bytes, want %d", g, len(shared), want)
		}
	}
}

// opensslHybrids returns the local openssl and whether it has group g,
// skipping when it does not; under CI=true an OpenSSL 3.5 or later that
// lacks one of the hybrids is a failure, not a skip.
func opensslHybrid(t *testing.T, g Group) {
	t.Helper()
	tool := testtool.RequireTool(t, "openssl")
	out, _ := exec.Command(tool, "version").Output()
	m := regexp.MustCompile(`OpenSSL (\d+)\.(\d+)`).FindStringSubmatch(string(out))
	modern := false
	if m != nil {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		modern = major > 3 || major == 3 && minor >= 5
	}
	groups, _ := exec.Command(tool, "list", "-tls-groups", "-tls1_3").CombinedOutput()
	if strings.Contains(string(groups), g.String()) {
		return
	}
	if modern && os.Getenv("CI") == "true" {
		t.Fatalf("%s lacks %v (list -tls-groups: %s)", strings.TrimSpace(string(out)), g, groups)
	}
	t.Skipf("%s lacks %v", strings.TrimSpace(string(out)), g)
}

func TestInteropHybridsOpenSSL(t *testing.T) {
	id := "NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:interop"
	psk := testPSK(id, crypto.SHA256)
	for _, g := range hybridGroups {
		t.Run(g.String()+" client", func(t *testing.T) {
			opensslHybrid(t, g)
			port := testtool.FreePort(t)
			startPeer(t, port, "openssl", "s_server", "-tls1_3", "-nocert", "-rev", "-psk", hexKey(psk), "-psk_identity", id,
				"-groups", g.String(), "-accept", strconv.Itoa(port))
			clientCell(t, port, &Config{PSKs: []PSK{psk}, Groups: []Group{g}}, "gnip\n",
				wantNegotiated(TLS_AES_128_GCM_SHA256, g, PSKModeDHE, false))
		})
		t.Run(g.String()+" server", func(t *testing.T) {
			opensslHybrid(t, g)
			serverCell(t, &Config{GetPSK: keyring(psk), Groups: []Group{g}}, "openssl", func(port int) []string {
				return []string{"s_client", "-tls1_3", "-quiet", "-no_ign_eof", "-connect", "127.0.0.1:" + strconv.Itoa(port),
					"-psk", hexKey(psk), "-psk_identity", id, "-groups", g.String()}
			}, wantNegotiated(TLS_AES_128_GCM_SHA256, g, PSKModeDHE, false))
		})
	}
}

// BenchmarkHybridHandshake measures a full psk_dhe_ke handshake (client
// and server in memory) per group, for comparing each hybrid with X25519.
func BenchmarkHybridHandshake(b *testing.B) {
	psk := testPSK("NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:host nqn.2024-01.io.example:subsys", crypto.SHA256)
	for _, g := range append([]Group{X25519, P256, P384}, hybridGroups...) {
		b.Run(g.String(), func(b *testing.B) {
			ccfg := &Config{PSKs: []PSK{psk}, Groups: []Group{g}, CipherSuites: []CipherSuite{TLS_AES_128_GCM_SHA256}}
			scfg := &Config{GetPSK: keyring(psk), Groups: []Group{g}}
			ctx := context.Background()
			errc := make(chan error, 1)
			b.ReportAllocs()
			for b.Loop() {
				cc, sc := memPipe()
				client, server := Client(cc, ccfg), Server(sc, scfg)
				go func() { errc <- server.Handshake(ctx) }()
				if err := client.Handshake(ctx); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzHybridShares: a peer's hybrid share of any content or length is
// refused with an alert or used; it never panics.
func FuzzHybridShares(f *testing.F) {
	for _, g := range []Group{SecP256r1MLKEM768, SecP384r1MLKEM1024} {
		_, share, err := newClientKey(g, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(g), share)
		srv, _, err := serverKeyExchange(g, share, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(g), srv)
	}
	keys := map[Group]clientKey{}
	for _, g := range []Group{SecP256r1MLKEM768, SecP384r1MLKEM1024} {
		keys[g], _, _ = newClientKey(g, nil)
	}
	f.Fuzz(func(t *testing.T, group uint16, share []byte) {
		g := SecP256r1MLKEM768
		if group%2 == 1 {
			g = SecP384r1MLKEM1024
		}
		if _, shared, err := serverKeyExchange(g, share, nil); err == nil && len(shared) == 0 {
			t.Fatal("accepted with an empty secret")
		}
		if shared, err := keys[g].finish(share); err == nil && len(shared) == 0 {
			t.Fatal("accepted with an empty secret")
		}
	})
}
