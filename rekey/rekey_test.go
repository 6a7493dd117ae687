package rekey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/ktls/ktlstest"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// modelKTLS is kTLS in userspace, as faithfully as a test needs: TLS 1.3
// records with the installed keys over a real connection, a key update
// pending after a KeyUpdate record is delivered (reads fail with
// EKEYEXPIRED until TLS_RX is set again), and, for kernels before 6.14,
// EBUSY on a second TLS_TX or TLS_RX.
type modelKTLS struct {
	conn         net.Conn
	rekeyable    bool
	mu           sync.Mutex
	tx, rx       *ktlstest.Direction
	rxExpired    bool
	txSet, rxSet bool
}

func (m *modelKTLS) SetTX(k ktls.Keys) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.txSet && !m.rekeyable {
		return syscall.EBUSY
	}
	d, err := ktlstest.NewDirection(k)
	if err != nil {
		return err
	}
	m.tx, m.txSet = d, true
	return nil
}

func (m *modelKTLS) SetRX(k ktls.Keys) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rxSet && !m.rekeyable {
		return syscall.EBUSY
	}
	d, err := ktlstest.NewDirection(k)
	if err != nil {
		return err
	}
	m.rx, m.rxSet, m.rxExpired = d, true, false
	return nil
}

func (m *modelKTLS) SendRecord(typ uint8, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.conn.Write(m.tx.Seal(typ, data))
	return err
}

func (m *modelKTLS) Write(p []byte) (int, error) {
	if err := m.SendRecord(23, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (m *modelKTLS) RecvRecord(buf []byte) (uint8, int, error) {
	m.mu.Lock()
	expired, rx := m.rxExpired, m.rx
	m.mu.Unlock()
	if expired {
		return 0, 0, syscall.EKEYEXPIRED
	}
	typ, data, err := rx.ReadRecord(m.conn)
	if errors.Is(err, ktlstest.ErrDecrypt) {
		return 0, 0, syscall.EBADMSG
	} else if err != nil {
		return 0, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if typ == 22 && len(data) > 0 && data[0] == msgKeyUpdate {
		m.rxExpired = true // like tls_sw: the next read waits for TLS_RX
	}
	return typ, copy(buf, data), nil
}

// handshakePair runs a PSK handshake over loopback TCP and hands both
// ends off, returning the connections and sessions.
func handshakePair(t testing.TB, suite tls13.CipherSuite) (cc, sc *net.TCPConn, cs, ss *tls13.Session) {
	t.Helper()
	cc, sc = testtool.TCPPair(t)
	psk := tls13.PSK{Identity: []byte("rekey"), Key: bytes.Repeat([]byte{7}, suite.Hash().Size()), Hash: suite.Hash()}
	server := tls13.Server(sc, &tls13.Config{GetPSK: func([]byte) (*tls13.PSK, error) { p := psk; return &p, nil }})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake(context.Background()) }()
	client := tls13.Client(cc, &tls13.Config{PSKs: []tls13.PSK{psk}, CipherSuites: []tls13.CipherSuite{suite}})
	if err := client.Handshake(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var err error
	if cs, err = client.Handoff(); err != nil {
		t.Fatal(err)
	}
	if ss, err = server.Handoff(); err != nil {
		t.Fatal(err)
	}
	return cc, sc, cs, ss
}

func install(t testing.TB, s Socket, sess *tls13.Session) {
	t.Helper()
	if err := s.SetTX(keysAt(sess.Suite, sess.TX)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRX(keysAt(sess.Suite, sess.RX)); err != nil {
		t.Fatal(err)
	}
}

func keysAt(suite tls13.CipherSuite, ts tls13.TrafficSecret) ktls.Keys { return Keys(suite, ts) }

// exerciseRekey sends data both ways between a and b with KeyUpdates in
// between, requested and not, and checks every byte and the counts.
func exerciseRekey(t *testing.T, a, b *Conn, rounds int) {
	t.Helper()
	buf := make([]byte, 64)
	pingPong := func(from, to *Conn, msg string) {
		t.Helper()
		if _, err := from.Write([]byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		n, err := io.ReadAtLeast(to, buf, len(msg))
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
	}
	for i := range rounds {
		pingPong(a, b, fmt.Sprintf("a→b before update %d", i))
		// A updates and asks B to: B answers while reading.
		if err := a.Update(true); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		pingPong(a, b, fmt.Sprintf("a→b after update %d", i))
		pingPong(b, a, fmt.Sprintf("b→a after update %d", i))
		// B updates alone.
		if err := b.Update(false); err != nil {
			t.Fatal(err)
		}
		pingPong(b, a, fmt.Sprintf("b→a after b's update %d", i))
	}
	as, ar := a.Updates()
	bs, br := b.Updates()
	if as != rounds || ar != 2*rounds || bs != 2*rounds || br != rounds {
		t.Errorf("updates: a sent %d received %d, b sent %d received %d; want %d %d %d %d",
			as, ar, bs, br, rounds, 2*rounds, 2*rounds, rounds)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(buf); err != io.EOF {
		t.Errorf("read after close_notify: %v, want io.EOF", err)
	}
}

func TestRekeyModel(t *testing.T) {
	for _, suite := range tls13.DefaultCipherSuites {
		t.Run(suite.String(), func(t *testing.T) {
			cc, sc, cs, ss := handshakePair(t, suite)
			ma, mb := &modelKTLS{conn: cc, rekeyable: true}, &modelKTLS{conn: sc, rekeyable: true}
			install(t, ma, cs)
			install(t, mb, ss)
			exerciseRekey(t, New(ma, cs), New(mb, ss), 5)
		})
	}
}

func TestRekeyUnsupportedKernel(t *testing.T) {
	cc, sc, cs, ss := handshakePair(t, tls13.TLS_AES_128_GCM_SHA256)
	ma, mb := &modelKTLS{conn: cc}, &modelKTLS{conn: sc}
	install(t, ma, cs)
	install(t, mb, ss)
	a := New(ma, cs)
	if err := a.Update(false); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Update = %v, want ErrUnsupported", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("write after a failed update: %v, want the sticky error", err)
	}
	// The peer got the KeyUpdate but cannot follow either.
	if _, err := New(mb, ss).Read(make([]byte, 8)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("peer read: %v, want ErrUnsupported", err)
	}
}

func TestMalformedPostHandshake(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"bad request value", []byte{msgKeyUpdate, 0, 0, 1, 2}},
		{"bad length", []byte{msgKeyUpdate, 0, 0, 2, 0, 0}},
		{"data after KeyUpdate", []byte{msgKeyUpdate, 0, 0, 1, 0, msgNewSessionTicket, 0, 0, 0}},
		{"truncated", []byte{msgKeyUpdate, 0}},
		{"unexpected message", []byte{20, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc, cs, ss := handshakePair(t, tls13.TLS_AES_128_GCM_SHA256)
			ma, mb := &modelKTLS{conn: cc, rekeyable: true}, &modelKTLS{conn: sc, rekeyable: true}
			install(t, ma, cs)
			install(t, mb, ss)
			if err := ma.SendRecord(22, tc.msg); err != nil {
				t.Fatal(err)
			}
			if _, err := New(mb, ss).Read(make([]byte, 8)); err == nil {
				t.Error("read accepted a malformed handshake record")
			}
		})
	}
	// A NewSessionTicket is skipped.
	cc, sc, cs, ss := handshakePair(t, tls13.TLS_AES_128_GCM_SHA256)
	ma, mb := &modelKTLS{conn: cc, rekeyable: true}, &modelKTLS{conn: sc, rekeyable: true}
	install(t, ma, cs)
	install(t, mb, ss)
	ma.SendRecord(22, []byte{msgNewSessionTicket, 0, 0, 2, 1, 2})
	ma.Write([]byte("after the ticket"))
	buf := make([]byte, 32)
	if n, err := New(mb, ss).Read(buf); err != nil || string(buf[:n]) != "after the ticket" {
		t.Errorf("read %q, %v", buf[:n], err)
	}
}
