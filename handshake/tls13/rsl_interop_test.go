package tls13

// record_size_limit (RFC 8449) against GnuTLS, both ways: the peer
// advertises a small limit (--recordsize=512), the data each way is larger
// than the limit, and every record the handed-off keys carry respects the
// limit the other side announced, as kTLS with TLS_TX_MAX_PAYLOAD_LEN
// does. GnuTLS enforces its limit (a control cell shows the record_overflow
// it sends for one byte too many), so a limit lost on the way would fail.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// writeLimited sends p as kTLS TX would with TLS_TX_MAX_PAYLOAD_LEN set
// for a peer limit (0: 2^14+1).
func (k *kernelSide) writeLimited(p []byte, peerLimit int) error {
	max := maxPlaintext
	if peerLimit != 0 {
		max = peerLimit - 1
	}
	for len(p) > 0 {
		n := min(max, len(p))
		if err := k.write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// hexLines is n bytes of printable test data in lines, for tools that
// print what they receive.
func hexLines(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		s := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		b.WriteString(hex.EncodeToString(s[:]) + "\n")
	}
	return b.Bytes()
}

func TestInteropRecordSizeLimitClientGnuTLS(t *testing.T) {
	testtool.RequireTool(t, "gnutls-serv")
	psk := testPSK("NVMe0R01 nqn.2014-08.org.nvmexpress.uuid-f81d4fae nqn.2024-01.io.example.gnutls", crypto.SHA256)
	passwd := pskPasswdFile(t, psk)
	dial := func(t *testing.T) (*kernelSide, Session) {
		port := testtool.FreePort(t)
		startPeer(t, port, "gnutls-serv", "-p", fmt.Sprint(port), "--echo", "--pskpasswd", passwd,
			"--recordsize=512", "--priority", gnutlsPriority+":+ECDHE-PSK")
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		// We advertise 1024: GnuTLS answers with its own limit only to a
		// client that sent one, and must then send us records of at most
		// 1023 bytes.
		c := Client(conn, &Config{PSKs: []PSK{psk}, RecordSizeLimit: 1024})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Handshake(ctx); err != nil {
			t.Fatal(err)
		}
		s, err := c.Handoff()
		if err != nil {
			t.Fatal(err)
		}
		if s.PeerRecordSizeLimit == 0 || s.PeerRecordSizeLimit > 513 {
			t.Fatalf("GnuTLS's record_size_limit %d, want at most 513", s.PeerRecordSizeLimit)
		}
		return newKernelSide(t, conn, s), *s
	}
	t.Run("echo", func(t *testing.T) {
		k, s := dial(t)
		data := hexLines(8000)
		if err := k.writeLimited(data, s.PeerRecordSizeLimit); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for len(got) < len(data) {
			rec, err := k.read()
			if err != nil {
				t.Fatalf("after %d bytes of the echo: %v", len(got), err)
			}
			if len(rec) > 1023 {
				t.Fatalf("GnuTLS sent a record of %d bytes, over our limit of 1024", len(rec))
			}
			got = append(got, rec...)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatal("echo differs")
		}
		t.Logf("peer limit %d: %d bytes each way", s.PeerRecordSizeLimit, len(data))
	})
	t.Run("control: one byte over the limit", func(t *testing.T) {
		k, s := dial(t)
		if err := k.write(make([]byte, s.PeerRecordSizeLimit)); err != nil {
			t.Fatal(err)
		}
		rec, err := k.read()
		if err == nil {
			t.Fatalf("GnuTLS took a record over its limit (echoed %d bytes)", len(rec))
		}
		t.Logf("GnuTLS refuses a record over its limit: %v (%d non-data records)", err, k.skipped)
	})
}

func TestInteropRecordSizeLimitServerGnuTLS(t *testing.T) {
	tool := testtool.RequireTool(t, "gnutls-cli")
	psk := testPSK("NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae nqn.2024-01.io.example:gnutls", crypto.SHA256)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(tool, "-p", fmt.Sprint(port), "127.0.0.1", "--pskusername", string(psk.Identity),
		"--pskkey", hexKey(psk), "--recordsize=512", "--priority", gnutlsPriority+":+ECDHE-PSK")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr testtool.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4096)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if len(sc.Text()) != 64 {
				stderr.Write([]byte(sc.Text() + "\n"))
			}
			lines <- sc.Text()
		}
		close(lines)
	}()
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("gnutls-cli stderr:\n%s", stderr.String())
		}
	}()
	l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// We advertise 700 back: gnutls-cli must send records of at most 699.
	srv := Server(conn, &Config{GetPSK: keyring(psk), RecordSizeLimit: 700})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := srv.Handoff()
	if err != nil {
		t.Fatal(err)
	}
	if s.PeerRecordSizeLimit == 0 || s.PeerRecordSizeLimit > 513 {
		t.Fatalf("gnutls-cli's record_size_limit %d, want at most 513", s.PeerRecordSizeLimit)
	}
	k := newKernelSide(t, conn, s)

	// gnutls-cli's to ours, in records within our limit.
	up := hexLines(2000)
	// gnutls-cli 3.7 with --recordsize=512 gives up (even against
	// gnutls-serv) when one read of its stdin is a few hundred bytes:
	// feed it a line at a time.
	go func() {
		for p := up; len(p) > 0; {
			n := min(65, len(p))
			if _, err := stdin.Write(p[:n]); err != nil {
				return
			}
			p = p[n:]
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var got []byte
	for len(got) < len(up) {
		rec, err := k.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				t.Fatalf("gnutls-cli closed after %d bytes", len(got))
			}
			t.Fatal(err)
		}
		if len(rec) > 699 {
			t.Fatalf("gnutls-cli sent a record of %d bytes, over our limit of 700", len(rec))
		}
		got = append(got, rec...)
	}
	if sha256.Sum256(got) != sha256.Sum256(up) {
		t.Fatal("data from gnutls-cli differs")
	}

	// Ours to gnutls-cli, which prints it.
	down := hexLines(6000)
	if err := k.writeLimited(down, s.PeerRecordSizeLimit); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(down)), "\n") {
		want[line] = true
	}
	var printed bytes.Buffer
	timeout := time.After(10 * time.Second)
	for printed.Len() < len(down) {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("gnutls-cli exited after printing %d of %d bytes", printed.Len(), len(down))
			}
			if want[strings.TrimSpace(line)] {
				printed.WriteString(strings.TrimSpace(line) + "\n")
			}
		case <-timeout:
			t.Fatalf("gnutls-cli printed %d of %d bytes", printed.Len(), len(down))
		}
	}
	if sha256.Sum256(printed.Bytes()) != sha256.Sum256(down) {
		t.Fatal("what gnutls-cli printed differs")
	}

	t.Logf("peer limit %d, ours 700: %d bytes down, %d up", s.PeerRecordSizeLimit, len(down), len(up))
}
