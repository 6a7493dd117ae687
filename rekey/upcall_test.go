package rekey

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// consumer plays a kernel consumer on a modelled kTLS socket: it reads
// and writes application data; KeyUpdates are the daemon's (Step).
type consumer struct {
	t    *testing.T
	sock *modelKTLS
	keys Keyed
}

func (c *consumer) step(op Op) {
	c.t.Helper()
	next, err := Step(c.sock, c.keys, op)
	if err != nil {
		c.t.Fatalf("Step(%v): %v", op, err)
	}
	c.keys = next
}

// expectKeyUpdate reads the peer's KeyUpdate record, after which reads
// fail with EKEYEXPIRED, and returns its request_update byte.
func (c *consumer) expectKeyUpdate() byte {
	c.t.Helper()
	buf := make([]byte, 64)
	typ, n, err := c.sock.RecvRecord(buf)
	if err != nil || typ != recordHandshake || n != 5 || buf[0] != msgKeyUpdate {
		c.t.Fatalf("read %d %x %v, want a KeyUpdate", typ, buf[:n], err)
	}
	if _, _, err := c.sock.RecvRecord(buf); !errors.Is(err, syscall.EKEYEXPIRED) {
		c.t.Fatalf("read after KeyUpdate: %v, want EKEYEXPIRED", err)
	}
	return buf[4]
}

// oneWay sends data from the consumer to the peer.
func oneWay(t *testing.T, c *consumer, peer *Conn, tag string) {
	t.Helper()
	msg := []byte(fmt.Sprintf("consumer→peer %s", tag))
	if _, err := c.sock.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 128)
	n, err := io.ReadAtLeast(peer, buf, len(msg))
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("peer read %q %v, want %q", buf[:n], err, msg)
	}
}

// both sends checksummed data each way.
func both(t *testing.T, c *consumer, peer *Conn, tag string) {
	t.Helper()
	msg := []byte(fmt.Sprintf("consumer→peer %s", tag))
	if _, err := c.sock.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 128)
	n, err := io.ReadAtLeast(peer, buf, len(msg))
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("peer read %q %v, want %q", buf[:n], err, msg)
	}
	msg = []byte(fmt.Sprintf("peer→consumer %s", tag))
	if _, err := peer.Write(msg); err != nil {
		t.Fatal(err)
	}
	typ, n, err := c.sock.RecvRecord(buf)
	if err != nil || typ != recordData || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("consumer read %d %q %v, want %q", typ, buf[:n], err, msg)
	}
}

func TestStepModel(t *testing.T) {
	for _, suite := range tls13.DefaultCipherSuites {
		t.Run(suite.String(), func(t *testing.T) {
			cc, sc, cs, ss := handshakePair(t, suite)
			ma, mb := &modelKTLS{conn: cc, rekeyable: true}, &modelKTLS{conn: sc, rekeyable: true}
			install(t, ma, cs)
			install(t, mb, ss)
			c := &consumer{t: t, sock: ma, keys: Keyed{Suite: suite, TX: cs.TX.Secret, RX: cs.RX.Secret}}
			peer := New(mb, ss)
			both(t, c, peer, "before")
			for i := range 3 {
				// SEND: the peer, asked, answers with its own.
				c.step(OpSend)
				oneWay(t, c, peer, fmt.Sprintf("after send %d (the peer's read answers)", i))
				if req := c.expectKeyUpdate(); req != updateNotRequested {
					t.Fatalf("peer's answer requests an update")
				}
				c.step(OpReceived)
				both(t, c, peer, fmt.Sprintf("after send %d", i))

				// RECEIVED: the peer updates alone.
				if err := peer.Update(false); err != nil {
					t.Fatal(err)
				}
				if req := c.expectKeyUpdate(); req != updateNotRequested {
					t.Fatal("update requested")
				}
				c.step(OpReceived)
				both(t, c, peer, fmt.Sprintf("after received %d", i))

				// RECEIVED_REQUEST_UPDATE.
				if err := peer.Update(true); err != nil {
					t.Fatal(err)
				}
				if req := c.expectKeyUpdate(); req != updateRequested {
					t.Fatal("update not requested")
				}
				c.step(OpReceivedRequestUpdate)
				both(t, c, peer, fmt.Sprintf("after received_request_update %d", i))
			}
			sent, recv := peer.Updates()
			if sent != 9 || recv != 6 {
				t.Errorf("peer sent %d and received %d updates, want 9 and 6", sent, recv)
			}
			// Generations per RFC 8446 7.2: TX 6, RX 9.
			for _, g := range []struct {
				name      string
				first, at []byte
				n         int
			}{{"TX", cs.TX.Secret, c.keys.TX, 6}, {"RX", cs.RX.Secret, c.keys.RX, 9}} {
				want := g.first
				for range g.n {
					want = tls13.NextTrafficSecret(suite, want)
				}
				if !bytes.Equal(g.at, want) {
					t.Errorf("%s secret is not generation %d", g.name, g.n)
				}
			}
			if err := CloseNotify(ma); err != nil {
				t.Fatal(err)
			}
			if _, err := peer.Read(make([]byte, 8)); err != io.EOF {
				t.Errorf("peer read after close_notify: %v", err)
			}
		})
	}
}

// stubSocket records calls and fails where told.
type stubSocket struct {
	calls        []string
	sendErr      error
	txErr, rxErr error
	peekTyp      uint8
	peekData     []byte
	peekErr      error
	noPeek       bool
}

func (s *stubSocket) SendRecord(typ uint8, data []byte) error {
	s.calls = append(s.calls, fmt.Sprintf("send %d %x", typ, data))
	return s.sendErr
}
func (s *stubSocket) SetTX(ktls.Keys) error { s.calls = append(s.calls, "tx"); return s.txErr }
func (s *stubSocket) SetRX(ktls.Keys) error { s.calls = append(s.calls, "rx"); return s.rxErr }
func (s *stubSocket) PeekRecord(buf []byte) (uint8, int, error) {
	s.calls = append(s.calls, "peek")
	if s.peekErr != nil {
		return 0, 0, s.peekErr
	}
	return s.peekTyp, copy(buf, s.peekData), nil
}

func TestStepOrderAndErrors(t *testing.T) {
	keys := Keyed{Suite: tls13.TLS_AES_128_GCM_SHA256, TX: make([]byte, 32), RX: make([]byte, 32)}
	for _, tc := range []struct {
		name  string
		op    Op
		sock  stubSocket
		calls string
		check func(error) bool
	}{
		{"send", OpSend, stubSocket{}, "send 22 1800000101,tx", nil},
		{"received", OpReceived, stubSocket{peekErr: syscall.EAGAIN}, "rx,peek", nil},
		{"received data waiting", OpReceived, stubSocket{peekTyp: 23, peekData: []byte("ab")}, "rx,peek", nil},
		{"request update", OpReceivedRequestUpdate, stubSocket{peekErr: syscall.EKEYEXPIRED}, "rx,send 22 1800000100,tx,peek", nil},
		{"peer close_notify", OpReceived, stubSocket{peekTyp: 21, peekData: []byte{1, 0}}, "rx,peek",
			func(err error) bool { return errors.Is(err, ErrPeerClosed) }},
		{"peer alert", OpReceived, stubSocket{peekTyp: 21, peekData: []byte{2, 40}}, "rx,peek",
			func(err error) bool {
				var a *tls13.AlertError
				return errors.As(err, &a) && a.Received && a.Alert == 40
			}},
		{"peer reset", OpReceivedRequestUpdate, stubSocket{sendErr: syscall.EPIPE}, "rx,send 22 1800000100",
			func(err error) bool { return errors.Is(err, ErrPeerClosed) }},
		{"bad record", OpReceived, stubSocket{peekErr: syscall.EBADMSG}, "rx,peek",
			func(err error) bool { return errors.Is(err, syscall.EBADMSG) }},
		{"old kernel", OpSend, stubSocket{txErr: syscall.EBUSY}, "send 22 1800000101,tx",
			func(err error) bool { return errors.Is(err, ErrUnsupported) }},
		{"rx fails", OpReceivedRequestUpdate, stubSocket{rxErr: syscall.EINVAL}, "rx",
			func(err error) bool { return errors.Is(err, syscall.EINVAL) && !errors.Is(err, ErrPeerClosed) }},
		{"unknown op", Op(0), stubSocket{}, "", func(err error) bool { return err != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, err := Step(&tc.sock, keys, tc.op)
			if got := join(tc.sock.calls); got != tc.calls {
				t.Errorf("calls %q, want %q", got, tc.calls)
			}
			switch {
			case tc.check == nil && err != nil:
				t.Fatalf("Step: %v", err)
			case tc.check != nil && !tc.check(err):
				t.Fatalf("Step: %v", err)
			case tc.check == nil:
				if (tc.op != OpReceived) == bytes.Equal(next.TX, keys.TX) {
					t.Error("TX secret changed where it should not, or the reverse")
				}
				if (tc.op != OpSend) == bytes.Equal(next.RX, keys.RX) {
					t.Error("RX secret changed where it should not, or the reverse")
				}
			}
		})
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}
