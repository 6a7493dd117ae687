package ktls

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// noMPTCP skips a test on a host without MPTCP, and fails it in CI.
func noMPTCP(t *testing.T, why error) { t.Helper(); testtool.NoMPTCP(t, why) }

// mptcpPair connects an MPTCP client to a listener over loopback and
// returns the client's fd (a blocking duplicate); server says whether
// the listener speaks MPTCP too (if not, the client falls back to TCP).
func mptcpPair(t *testing.T, server bool) int {
	t.Helper()
	c, _ := testtool.MPTCPPair(t, server)
	fd := dupFD(t, c) // a blocking dup, the only one left open
	c.Close()
	if p, _ := Protocol(fd); p != unix.IPPROTO_MPTCP {
		noMPTCP(t, errors.New("the dialer made a TCP socket"))
	}
	return fd
}

func TestParseMPTCPInfo(t *testing.T) {
	b := make([]byte, mptcpInfoLen)
	b[0], b[1], b[2], b[3] = 1, 1, 0, 2
	binary.NativeEndian.PutUint32(b[8:], 2) // REMOTE_KEY_RECEIVED
	binary.NativeEndian.PutUint32(b[12:], 0xabcd)
	b[mptcpInfoTotalOff] = 2
	i, err := ParseMPTCPInfo(b)
	want := MPTCPInfo{Subflows: 1, SubflowsTotal: 2, SubflowsMax: 2, AddAddrSignal: 1, Flags: 2, Token: 0xabcd}
	if err != nil || i != want {
		t.Errorf("ParseMPTCPInfo = %+v, %v; want %+v", i, err, want)
	}
	// A 5.16 kernel's shorter struct: the total is derived.
	i, err = ParseMPTCPInfo(b[:43])
	if err != nil || i.SubflowsTotal != 2 {
		t.Errorf("short: %+v, %v", i, err)
	}
	binary.NativeEndian.PutUint32(b[8:], 1)
	if i, _ := ParseMPTCPInfo(b); !i.Fallback {
		t.Errorf("fallback flag not seen: %+v", i)
	}
	if _, err := ParseMPTCPInfo(b[:mptcpInfoMinLen-1]); err == nil {
		t.Error("a truncated MPTCP_INFO parsed")
	}
}

func FuzzParseMPTCPInfo(f *testing.F) {
	f.Add(make([]byte, mptcpInfoLen))
	f.Add(make([]byte, mptcpInfoMinLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		i, err := ParseMPTCPInfo(b)
		if err != nil {
			if len(b) >= mptcpInfoMinLen {
				t.Fatalf("%d bytes refused: %v", len(b), err)
			}
			return
		}
		if i.Fallback != (i.Flags&1 != 0) || i.Subflows != b[0] {
			t.Fatalf("inconsistent %+v", i)
		}
	})
}

// TestMPTCPInfoReal: over loopback with both ends MPTCP the connection
// is really MPTCP, with one subflow.
func TestMPTCPInfoReal(t *testing.T) {
	fd := mptcpPair(t, true)
	i, err := ReadMPTCPInfo(fd)
	if err != nil {
		t.Fatalf("ReadMPTCPInfo: %v", err)
	}
	if i.Fallback || i.SubflowsTotal < 1 || i.Token == 0 {
		t.Errorf("MPTCP_INFO %+v, want an MPTCP connection with a subflow", i)
	}
	if fb, err := MPTCPFallback(fd); fb || err != nil {
		t.Errorf("MPTCPFallback = %v, %v; want false", fb, err)
	}
	if ulp, err := ULP(fd); err != nil || ulp != "mptcp" {
		// Today's kernels name the msk's own ULP; noted, not required.
		t.Logf("TCP_ULP on the msk reads %q, %v", ulp, err)
	}
}

// TestMPTCPFallbackReal: an MPTCP client of a plain TCP server falls back.
func TestMPTCPFallbackReal(t *testing.T) {
	fd := mptcpPair(t, false)
	fb, err := MPTCPFallback(fd)
	if err != nil || !fb {
		t.Errorf("MPTCPFallback = %v, %v; want true", fb, err)
	}
	if _, err := ReadMPTCPInfo(fd); !errors.Is(err, ErrMPTCPFallback) {
		t.Errorf("ReadMPTCPInfo = %v, want ErrMPTCPFallback", err)
	}
}

func TestMPTCPFallbackTCP(t *testing.T) {
	a, _ := tcpPair(t)
	if _, err := MPTCPFallback(a); !errors.Is(err, ErrNotMPTCP) {
		t.Errorf("MPTCPFallback(TCP) = %v, want ErrNotMPTCP", err)
	}
}

// TestMPTCPULPRefused: no released kernel takes the TLS ULP on an MPTCP
// socket (the MPTCP kTLS series is not merged): ULPSupported says no,
// without an error, whether or not the kernel has kTLS at all. A kernel
// with the series fails this test, which is then due for an update.
func TestMPTCPULPRefused(t *testing.T) {
	fd := mptcpPair(t, true)
	ok, err := ULPSupported(fd)
	if ok || err != nil {
		t.Fatalf("ULPSupported(MPTCP) = %v, %v; want false, nil", ok, err)
	}
	err = AttachULP(fd)
	var ie *InstallError
	if !errors.As(err, &ie) || ie.Step != StepULP || !errors.Is(err, ErrULPUnsupported) {
		t.Errorf("AttachULP(MPTCP) = %v, want ErrULPUnsupported at %s", err, StepULP)
	}
	t.Logf("MPTCP: %v", err)
}

// TestInstallAfterAttachULP: a socket whose ULP was attached before the
// handshake still takes Install (the kernel's EEXIST to the second
// TCP_ULP is tolerated), and records then cross. Without kTLS (this
// development host) both steps fail alike with ErrNoKTLS.
func TestInstallAfterAttachULP(t *testing.T) {
	a, b := tcpPair(t)
	err := AttachULP(a)
	if errors.Is(err, ErrNoKTLS) {
		if err := Install(a, testKeys(0x1301, 1), testKeys(0x1301, 2), Options{}); !errors.Is(err, ErrNoKTLS) {
			t.Errorf("Install without kTLS = %v, want ErrNoKTLS", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("AttachULP(TCP) = %v", err)
	}
	if err := AttachULP(a); err != nil {
		t.Fatalf("second AttachULP = %v, want nil (EEXIST with tls attached)", err)
	}
	if ulp, err := ULP(a); ulp != "tls" || err != nil {
		t.Errorf("ULP = %q, %v; want tls", ulp, err)
	}
	k1, k2 := testKeys(0x1301, 0x11), testKeys(0x1301, 0x22)
	if err := Install(a, k1, k2, Options{}); err != nil {
		t.Fatalf("Install after AttachULP = %v", err)
	}
	if err := Install(b, k2, k1, Options{}); err != nil {
		t.Fatal(err)
	}
	msg := []byte("through kTLS after an early ULP")
	if _, err := unix.Write(a, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 64)
	n, err := unix.Read(b, got)
	if err != nil || string(got[:n]) != string(msg) {
		t.Errorf("read %q, %v; want %q", got[:n], err, msg)
	}
}
