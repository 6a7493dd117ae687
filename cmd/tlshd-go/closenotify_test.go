package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

func testPSK(t *testing.T) tls13.PSK {
	key, err := hex.DecodeString(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	return tls13.PSK{Identity: []byte(testID), Key: key, Hash: crypto.SHA256}
}

// expectCloseNotify reads from a peer until the session ends: it must
// end with close_notify (io.EOF), not a bare TCP close.
func expectCloseNotify(t *testing.T, c *tls13.Conn, raw net.Conn) {
	t.Helper()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatalf("the session ended with %v, want close_notify", err)
	}
}

// TestServeSIGTERMSendsCloseNotify: SIGTERM with a session open ends it
// with close_notify.
func TestServeSIGTERMSendsCloseNotify(t *testing.T) {
	addr, serr, done := serveOnce(t, "--psk-identity", testID, "--psk", strings.Repeat("ab", 32))
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cli := tls13.Client(raw, &tls13.Config{PSKs: []tls13.PSK{testPSK(t)}})
	if err := cli.Handshake(context.Background()); err != nil {
		t.Fatal(err)
	}
	cli.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(cli, buf); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	expectCloseNotify(t, cli, raw)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, serr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}

// TestConnectSIGTERMSendsCloseNotify: the same for connect, whose stdin
// has not ended.
func TestConnectSIGTERMSendsCloseNotify(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	var cerr testtool.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"connect", "--psk-identity", testID, "--psk", strings.Repeat("ab", 32), l.Addr().String()},
			stdin, &testtool.Buffer{}, &cerr)
	}()
	raw, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	psk := testPSK(t)
	srv := tls13.Server(raw, &tls13.Config{GetPSK: func(id []byte) (*tls13.PSK, error) {
		if !bytes.Equal(id, psk.Identity) {
			return nil, tls13.ErrUnknownPSK
		}
		p := psk
		return &p, nil
	}})
	if err := srv.Handshake(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The signal handler is in place once connect reports the session.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(cerr.String(), "connected to") {
		if time.Now().After(deadline) {
			t.Fatalf("connect did not report the session: %s", &cerr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	expectCloseNotify(t, srv, raw)
	srv.Close() // our close_notify lets connect's read end
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("connect did not exit after SIGTERM")
	}
}
