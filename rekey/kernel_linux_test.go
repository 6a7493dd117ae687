package rekey

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// tlsStat reads /proc/net/tls_stat.
func tlsStat(t *testing.T) map[string]int {
	b, err := os.ReadFile("/proc/net/tls_stat")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]], _ = strconv.Atoi(f[1])
		}
	}
	return m
}

// kernelPair is handshakePair with the kernel's kTLS installed on both
// ends: the client's and the server's fds (closed at cleanup) and their
// sessions.
func kernelPair(t *testing.T, suite tls13.CipherSuite) (a, b int, cs, ss *tls13.Session) {
	t.Helper()
	cc, sc, cs, ss := handshakePair(t, suite)
	var fds [2]int
	for i, c := range []*net.TCPConn{cc, sc} {
		f, err := c.File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fds[i] = int(f.Fd())
	}
	for i, s := range []*tls13.Session{cs, ss} {
		if err := ktls.Install(fds[i], keysAt(s.Suite, s.TX), keysAt(s.Suite, s.RX), ktls.Options{}); err != nil {
			t.Fatalf("installing kTLS: %v", err)
		}
	}
	return fds[0], fds[1], cs, ss
}

// TestRekeyKernel runs KeyUpdates through the kernel's own kTLS: the VM
// end-to-end run executes it on Debian's 6.12 (which must refuse, EBUSY)
// and 7.x kernels (which must rotate, counted in tls_stat).
func TestRekeyKernel(t *testing.T) {
	if _, err := os.Stat("/proc/net/tls_stat"); err != nil {
		t.Skip("no kTLS on this kernel (the tls module is not loaded); tests/vm runs this test on real kernels")
	}
	for _, suite := range tls13.DefaultCipherSuites {
		t.Run(suite.String(), func(t *testing.T) {
			fa, fb, cs, ss := kernelPair(t, suite)
			a, b := New(KTLS{FD: fa}, cs), New(KTLS{FD: fb}, ss)
			before := tlsStat(t)
			if _, ok := before["TlsTxRekeyOk"]; !ok {
				// No rekey counters: a kernel before 6.14.
				if err := a.Update(false); !errors.Is(err, ErrUnsupported) {
					t.Fatalf("Update on a kernel without kTLS rekey = %v, want ErrUnsupported", err)
				}
				t.Logf("kernel refuses kTLS rekey, as expected before 6.14")
				return
			}
			const rounds = 3
			exerciseRekey(t, a, b, rounds)
			after := tlsStat(t)
			// a sends rounds updates and b 2*rounds; each is one TX rekey
			// on the sender and one RX rekey on the receiver.
			for _, k := range []string{"TlsTxRekeyOk", "TlsRxRekeyOk"} {
				if d := after[k] - before[k]; d < 3*rounds {
					t.Errorf("%s went up by %d, want %d", k, d, 3*rounds)
				}
			}
			t.Logf("kernel rekeyed: TlsTxRekeyOk +%d, TlsRxRekeyOk +%d, TlsRxRekeyReceived +%d",
				after["TlsTxRekeyOk"]-before["TlsTxRekeyOk"], after["TlsRxRekeyOk"]-before["TlsRxRekeyOk"],
				after["TlsRxRekeyReceived"]-before["TlsRxRekeyReceived"])
		})
	}
}
