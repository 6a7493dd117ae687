package handshake

import (
	"bytes"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
)

// openCounter counts opens of the files in a directory (inotify
// IN_OPEN); the kernel queues the event as the open happens.
type openCounter struct{ fd int }

func watchOpens(t testing.TB, dir string) *openCounter {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	return &openCounter{fd: fd}
}

// take returns the opens since the last call, by file name.
func (c *openCounter) take(t testing.TB) map[string]int {
	t.Helper()
	opens := map[string]int{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(c.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return opens
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			opens[string(name)]++
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// TestX509OpensNoFilesPerHandshake: trust anchors, CRLs, name patterns,
// certificates and keys are loaded with the policy, so an x509 handshake
// (both ends of mutual TLS, with a CRL and an allow-list) opens none of
// the policy's files. Before policies were compiled, each pair opened
// the anchors twice, the CRL, and both certificates and keys.
func TestX509OpensNoFilesPerHandshake(t *testing.T) {
	p := newPKI(t)
	opens := watchOpens(t, p.dir)
	td := newTestDaemon(t, p.policy("", `client_certificate = "required"
allowed_names = ["client.example.com"]`))
	if loaded := opens.take(t); len(loaded) == 0 {
		t.Fatal("loading the policy opened no file: the watch sees nothing")
	}
	td.start()
	mtls := fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.X509, PeerName: "nfs.example.com"}
	server := fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509}
	const pairs = 3
	for range pairs {
		rc, rs, _, _ := x509Pair(t, td, mtls, server)
		if rc.Status != 0 || rs.Status != 0 {
			t.Fatalf("client %+v server %+v\n%s", rc, rs, td.logs)
		}
	}
	got := opens.take(t)
	total := 0
	for _, n := range got {
		total += n
	}
	t.Logf("file opens per x509 handshake: %.1f (%v)", float64(total)/(2*pairs), got)
	if total != 0 {
		t.Errorf("%d handshakes opened policy files: %v", 2*pairs, got)
	}
}

// BenchmarkX509Handshake runs mutual-TLS pairs through the daemon and
// the fake kernel (client and server in one op), with the policy's
// anchors, CRL and allow-list: the allocations per op include what
// loading credentials costs per handshake.
func BenchmarkX509Handshake(b *testing.B) {
	p := newPKI(b)
	td := newTestDaemon(b, p.policy("", `client_certificate = "required"
allowed_names = ["client.example.com"]`))
	td.Log = discardLogger()
	td.start()
	mtls := fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.X509, PeerName: "nfs.example.com"}
	server := fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509}
	b.ReportAllocs()
	for b.Loop() {
		rc, rs, _, _ := x509Pair(b, td, mtls, server)
		if rc.Status != 0 || rs.Status != 0 {
			b.Fatalf("client %+v server %+v", rc, rs)
		}
	}
}

// closingSigner stands in for a TPM key: a software key that counts
// closes.
type closingSigner struct {
	crypto.Signer
	closes *atomic.Int32
}

func (s closingSigner) Close() error { s.closes.Add(1); return nil }

// TestX509TPMKeyOpenedPerHandshake: a TPM key is kept as its PEM from the
// policy's load and opened (loaded into the TPM) for each handshake, then
// closed (flushed); its file is not read again.
func TestX509TPMKeyOpenedPerHandshake(t *testing.T) {
	p := newPKI(t)
	blob := pem.EncodeToMemory(&pem.Block{Type: certs.TSS2PEMType, Bytes: []byte{0x30, 0}})
	tpmKey := certstest.WriteFile(t, p.dir, "server.tpm", blob)
	opens := watchOpens(t, p.dir)
	td := newTestDaemon(t, "")
	td.policy.Store(mustPolicy(t, fmt.Sprintf("[client.x509]\ntrust_anchors = [%q]\n[server.x509]\ncertificate = %q\nprivate_key = %q\n",
		p.caFile, p.srvCert, tpmKey)))
	var opened, closed atomic.Int32
	td.OpenTPMKey = func(pemBytes []byte) (crypto.Signer, error) {
		if !bytes.Equal(pemBytes, blob) {
			return nil, fmt.Errorf("opener got %q", pemBytes)
		}
		opened.Add(1)
		return closingSigner{Signer: p.server.Key, closes: &closed}, nil
	}
	opens.take(t)
	td.start()
	unauth := fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth, PeerName: "nfs.example.com"}
	server := fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509}
	for range 2 {
		rc, rs, _, _ := x509Pair(t, td, unauth, server)
		if rc.Status != 0 || rs.Status != 0 {
			t.Fatalf("client %+v server %+v\n%s", rc, rs, td.logs)
		}
	}
	td.stop(t)
	if opened.Load() != 2 || closed.Load() != 2 {
		t.Errorf("TPM key opened %d and closed %d times for 2 handshakes", opened.Load(), closed.Load())
	}
	if got := opens.take(t); len(got) != 0 {
		t.Errorf("handshakes opened policy files: %v", got)
	}
}
