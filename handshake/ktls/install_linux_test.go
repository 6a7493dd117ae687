package ktls

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// tcpPair returns the fds of both ends of an established loopback TCP
// connection. The fds are duplicates, in blocking mode, closed at
// cleanup.
func tcpPair(t *testing.T) (a, b int) {
	t.Helper()
	cc, sc := testtool.TCPPair(t)
	defer cc.Close()
	defer sc.Close()
	return dupFD(t, cc), dupFD(t, sc)
}

func dupFD(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	f, err := c.File() // a blocking duplicate
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func testKeys(suite uint16, fill byte) Keys {
	s, _ := suiteFor(suite)
	return Keys{Suite: suite, Key: bytes.Repeat([]byte{fill}, s.keyLen), IV: bytes.Repeat([]byte{fill + 1}, 12)}
}

// TestInstall documents the host. Where the kernel has no TLS ULP (this
// development host: CONFIG_TLS off) Install must fail at TCP_ULP with
// ENOENT. Where it has one (the test VM), both ends get kTLS and records
// of each type cross over.
func TestInstall(t *testing.T) {
	a, b := tcpPair(t)
	k1, k2 := testKeys(0x1301, 0x11), testKeys(0x1301, 0x22)
	err := Install(a, k1, k2, Options{}) // TxMaxPayload: maxpayload_linux_test.go
	if err != nil {
		var ie *InstallError
		if !errors.As(err, &ie) || ie.Step != StepULP {
			t.Fatalf("Install() = %v, want an *InstallError at %s", err, StepULP)
		}
		if !errors.Is(err, unix.ENOENT) || !errors.Is(err, ErrNoKTLS) || errors.Is(err, ErrULPUnsupported) {
			t.Fatalf("Install() = %v, want ENOENT and ErrNoKTLS only", err)
		}
		t.Logf("no kTLS on this host: %v", err)
		return
	}
	if err := Install(b, k2, k1, Options{}); err != nil {
		t.Fatalf("Install on the peer: %v", err)
	}
	for _, rec := range []struct {
		typ  uint8
		data []byte
	}{
		{23, []byte("hello, kernel")},
		{21, []byte{1, 0}}, // warning close_notify
		{23, bytes.Repeat([]byte{7}, 9000)},
		// Last: from 6.14 on the receiver must install the next key
		// before it can read anything after a KeyUpdate (EKEYEXPIRED).
		{22, []byte{24, 0, 0, 1, 0}}, // KeyUpdate(update_not_requested)
	} {
		if err := SendRecord(a, rec.typ, rec.data); err != nil {
			t.Fatalf("SendRecord(%d): %v", rec.typ, err)
		}
		buf := make([]byte, 16384)
		var got []byte
		for len(got) < len(rec.data) {
			typ, n, err := RecvRecord(b, buf)
			if err != nil {
				t.Fatalf("RecvRecord: %v", err)
			}
			if typ != rec.typ {
				t.Fatalf("record type %d, want %d", typ, rec.typ)
			}
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, rec.data) {
			t.Fatalf("record of type %d: got %d bytes, want %d", rec.typ, len(got), len(rec.data))
		}
	}
}

func TestInstallBadKeys(t *testing.T) {
	a, _ := tcpPair(t)
	// Keys are checked only after TCP_ULP; on a host without kTLS the
	// ULP step fails first, which TestInstall covers.
	err := Install(a, Keys{Suite: 0x1301}, Keys{Suite: 0x1301}, Options{})
	var ie *InstallError
	if !errors.As(err, &ie) {
		t.Fatalf("Install() = %v, want *InstallError", err)
	}
	if ie.Step != StepULP && ie.Step != StepTX {
		t.Errorf("Step = %q, want %s or %s", ie.Step, StepULP, StepTX)
	}
}

func TestInstallMPTCP(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	if err != nil {
		t.Skipf("no MPTCP: %v", err)
	}
	defer unix.Close(fd)
	if p, err := Protocol(fd); err != nil || p != unix.IPPROTO_MPTCP {
		t.Errorf("Protocol() = %d, %v; want %d", p, err, unix.IPPROTO_MPTCP)
	}
	err = Install(fd, testKeys(0x1301, 1), testKeys(0x1301, 2), Options{})
	var ie *InstallError
	if !errors.As(err, &ie) || ie.Step != StepULP {
		t.Fatalf("Install(MPTCP) = %v, want an *InstallError at %s", err, StepULP)
	}
	t.Logf("MPTCP: %v", err)
	// MPTCP refuses the ULP before looking it up, so this holds with
	// or without kTLS: ENOPROTOOPT on 6.12 and on this 6.18 host
	// (unconnected socket), EOPNOTSUPP in some other paths.
	if !errors.Is(err, ErrULPUnsupported) {
		t.Errorf("Install(MPTCP) = %v, want ErrULPUnsupported", err)
	}
}

func TestProtocolTCP(t *testing.T) {
	a, _ := tcpPair(t)
	if p, err := Protocol(a); err != nil || p != unix.IPPROTO_TCP {
		t.Errorf("Protocol() = %d, %v; want %d", p, err, unix.IPPROTO_TCP)
	}
	if _, err := Protocol(-1); !errors.Is(err, unix.EBADF) {
		t.Errorf("Protocol(-1) = %v, want EBADF", err)
	}
}

func TestInstallErrorMessage(t *testing.T) {
	e := &InstallError{Step: StepULP, Err: unix.ENOENT, kind: ErrNoKTLS}
	want := "ktls: TCP_ULP: no such file or directory (kernel has no TLS ULP: tls module missing or CONFIG_TLS off)"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

// Without kTLS, record framing degrades to plain TCP: the cmsg is ignored
// on send and absent on receive, which reads as application data.
func TestRecordsWithoutKTLS(t *testing.T) {
	a, b := tcpPair(t)
	if err := SendRecord(a, 21, []byte{2, 40}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	typ, n, err := RecvRecord(b, buf)
	if err != nil || typ != 23 || !bytes.Equal(buf[:n], []byte{2, 40}) {
		t.Fatalf("RecvRecord() = %d, %x, %v; want 23, 0228, nil", typ, buf[:n], err)
	}
	if err := SendRecord(a, 23, nil); err == nil {
		t.Error("SendRecord with no data succeeded")
	}
	unix.Shutdown(a, unix.SHUT_WR)
	if _, _, err := RecvRecord(b, buf); err != io.EOF {
		t.Errorf("RecvRecord at end of stream = %v, want io.EOF", err)
	}
}

func TestRecordTypeCmsg(t *testing.T) {
	oob := recordTypeCmsg(22)
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ParseSocketControlMessage() = %v, %v", msgs, err)
	}
	m := msgs[0]
	if m.Header.Level != 282 || m.Header.Type != 1 || !bytes.Equal(m.Data, []byte{22}) {
		t.Errorf("cmsg = level %d type %d data %x; want 282 1 16", m.Header.Level, m.Header.Type, m.Data)
	}

	// The same layout with TLS_GET_RECORD_TYPE is what recvmsg returns.
	get := recordTypeCmsg(21)
	(*unix.Cmsghdr)(unsafe.Pointer(&get[0])).Type = 2
	if typ, ok, err := parseRecordType(get); err != nil || !ok || typ != 21 {
		t.Errorf("parseRecordType() = %d, %v, %v; want 21, true, nil", typ, ok, err)
	}
	if _, ok, err := parseRecordType(nil); ok || err != nil {
		t.Errorf("parseRecordType(nil) = %v, %v; want false, nil", ok, err)
	}
}
