package rekey

import (
	"errors"
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

// TestRekeyKernel runs KeyUpdates through the kernel's own kTLS: the VM
// end-to-end run executes it on Debian's 6.12 (which must refuse, EBUSY)
// and 7.x kernels (which must rotate, counted in tls_stat).
func TestRekeyKernel(t *testing.T) {
	if _, err := os.Stat("/proc/net/tls_stat"); err != nil {
		t.Skip("no kTLS on this kernel (the tls module is not loaded); tests/vm runs this test on real kernels")
	}
	for _, suite := range tls13.DefaultCipherSuites {
		t.Run(suite.String(), func(t *testing.T) {
			cc, sc, cs, ss := handshakePair(t, suite)
			fa, err := cc.File()
			if err != nil {
				t.Fatal(err)
			}
			defer fa.Close()
			fb, err := sc.File()
			if err != nil {
				t.Fatal(err)
			}
			defer fb.Close()
			for _, x := range []struct {
				fd int
				s  *tls13.Session
			}{{int(fa.Fd()), cs}, {int(fb.Fd()), ss}} {
				if err := ktls.Install(x.fd, keysAt(x.s.Suite, x.s.TX), keysAt(x.s.Suite, x.s.RX), ktls.Options{}); err != nil {
					t.Fatalf("installing kTLS: %v", err)
				}
			}
			a, b := New(KTLS{FD: int(fa.Fd())}, cs), New(KTLS{FD: int(fb.Fd())}, ss)
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
