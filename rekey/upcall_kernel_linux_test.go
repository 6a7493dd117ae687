package rekey

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// TestStepKernel runs the upcall's three operations on the kernel's own
// kTLS, as the daemon does for a consumer's socket: one end is the
// consumer (application data through ktls, keys by Step), the other a
// Conn. On a kernel without kTLS rekey Step must fail with
// ErrUnsupported.
func TestStepKernel(t *testing.T) {
	if _, err := os.Stat("/proc/net/tls_stat"); err != nil {
		t.Skip("no kTLS on this kernel (the tls module is not loaded); tests/vm runs this test on real kernels")
	}
	suite := tls13.TLS_AES_256_GCM_SHA384
	fa, fb, cs, ss := kernelPair(t, suite)
	sock := KTLS{FD: fa}
	keys := Keyed{Suite: suite, TX: cs.TX.Secret, RX: cs.RX.Secret}
	peer := New(KTLS{FD: fb}, ss)
	before := tlsStat(t)
	if _, ok := before["TlsTxRekeyOk"]; !ok {
		if _, err := Step(sock, keys, OpSend); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Step on a kernel without kTLS rekey = %v, want ErrUnsupported", err)
		}
		return
	}
	step := func(op Op) {
		t.Helper()
		next, err := Step(sock, keys, op)
		if err != nil {
			t.Fatalf("Step(%v): %v", op, err)
		}
		keys = next
	}
	buf := make([]byte, 256)
	toPeer := func(msg string) {
		t.Helper()
		if _, err := sock.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := io.ReadAtLeast(peer, buf, len(msg))
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("peer read %q %v, want %q", buf[:n], err, msg)
		}
	}
	fromPeer := func(msg string) {
		t.Helper()
		if _, err := peer.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		typ, n, err := ktls.RecvRecord(fa, buf)
		if err != nil || typ != recordData || string(buf[:n]) != msg {
			t.Fatalf("consumer read %d %q %v, want %q", typ, buf[:n], err, msg)
		}
	}
	keyUpdate := func() {
		t.Helper()
		typ, n, err := ktls.RecvRecord(fa, buf)
		if err != nil || typ != recordHandshake || n != 5 || buf[0] != msgKeyUpdate {
			t.Fatalf("consumer read %d %x %v, want a KeyUpdate", typ, buf[:n], err)
		}
		if _, _, err := ktls.RecvRecord(fa, buf); !errors.Is(err, syscall.EKEYEXPIRED) {
			t.Fatalf("read after KeyUpdate: %v, want EKEYEXPIRED", err)
		}
	}
	const rounds = 5
	for i := range rounds {
		step(OpSend)
		toPeer(fmt.Sprintf("send %d", i))
		keyUpdate()
		step(OpReceived)
		fromPeer(fmt.Sprintf("after send %d", i))
		peer.Update(false)
		keyUpdate()
		step(OpReceived)
		fromPeer(fmt.Sprintf("received %d", i))
		toPeer(fmt.Sprintf("received %d", i))
		peer.Update(true)
		keyUpdate()
		step(OpReceivedRequestUpdate)
		toPeer(fmt.Sprintf("request %d", i))
		fromPeer(fmt.Sprintf("request %d", i))
	}
	after := tlsStat(t)
	// The consumer's end: 2 TX and 3 RX rekeys a round; the peer's the
	// reverse.
	if d := after["TlsTxRekeyOk"] - before["TlsTxRekeyOk"]; d < 5*rounds {
		t.Errorf("TlsTxRekeyOk went up by %d, want %d", d, 5*rounds)
	}
	if d := after["TlsRxRekeyOk"] - before["TlsRxRekeyOk"]; d < 5*rounds {
		t.Errorf("TlsRxRekeyOk went up by %d, want %d", d, 5*rounds)
	}
	// The peer's close_notify, waiting under the new keys, is reported.
	peer.Update(false)
	peer.Close()
	keyUpdate()
	if _, err := Step(sock, keys, OpReceived); !errors.Is(err, ErrPeerClosed) {
		t.Errorf("Step with the peer's close_notify waiting: %v, want ErrPeerClosed", err)
	}
}
