package handshake

import (
	"context"
	"crypto"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// mptcpPair is a real loopback MPTCP connection: consumer is what a
// kernel consumer (NVMe over MPTCP) would own, peer the remote end.
func mptcpPair(t *testing.T) (consumer *os.File, peer net.Conn) {
	t.Helper()
	c, peer := testtool.MPTCPPair(t, true)
	consumer, err := c.File() // a blocking dup, the only one left open
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consumer.Close() })
	return consumer, peer
}

// proposalKernel models kTLS on an MPTCP socket as the MPTCP kTLS series
// (RFC, 2026-06) defines it: the msk takes TCP_ULP "tls" unless it fell
// back to TCP, a second TCP_ULP answers EEXIST, and TLS_TX/TLS_RX are
// accepted once the ULP is there (ENOPROTOOPT before, as SOL_TLS is then
// unknown). Install runs ktls.Install's steps against it. It keeps the
// crypto_info structs, and a log of events to check their order.
type proposalKernel struct {
	fallback bool

	mu     sync.Mutex
	ulp    map[int]string
	tx, rx map[int][]byte
	events []string
}

func (k *proposalKernel) event(e string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.events = append(k.events, e)
}

func (k *proposalKernel) log() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.events, ", ")
}

func (k *proposalKernel) MPTCPFallback(fd int) (bool, error) { return k.fallback, nil }

func (k *proposalKernel) AttachULP(fd int) error {
	err := k.setULP(fd)
	if errors.Is(err, unix.EEXIST) && k.ulpOf(fd) == "tls" {
		return nil
	}
	return err
}

func (k *proposalKernel) ulpOf(fd int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ulp[fd]
}

// setULP is setsockopt(TCP_ULP, "tls") on the model msk.
func (k *proposalKernel) setULP(fd int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.fallback:
		k.events = append(k.events, "TCP_ULP refused (fallback)")
		return errors.Join(ktls.ErrULPUnsupported, unix.EOPNOTSUPP)
	case k.ulp[fd] == "tls":
		k.events = append(k.events, "TCP_ULP EEXIST")
		return unix.EEXIST
	}
	if k.ulp == nil {
		k.ulp = map[int]string{}
	}
	k.ulp[fd] = "tls"
	k.events = append(k.events, "TCP_ULP tls")
	return nil
}

func (k *proposalKernel) Install(fd int, tx, rx ktls.Keys, o ktls.Options) error {
	if err := k.AttachULP(fd); err != nil {
		return &ktls.InstallError{Step: ktls.StepULP, Err: err}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ulp[fd] != "tls" {
		return &ktls.InstallError{Step: ktls.StepTX, Err: unix.ENOPROTOOPT}
	}
	txi, err := ktls.CryptoInfo(tx)
	if err != nil {
		return &ktls.InstallError{Step: ktls.StepTX, Err: err}
	}
	rxi, err := ktls.CryptoInfo(rx)
	if err != nil {
		return &ktls.InstallError{Step: ktls.StepRX, Err: err}
	}
	if k.tx == nil {
		k.tx, k.rx = map[int][]byte{}, map[int][]byte{}
	}
	k.tx[fd], k.rx[fd] = txi, rxi
	k.events = append(k.events, "TLS_TX", "TLS_RX")
	return nil
}

// firstByte reports, in a proposalKernel's log, when the peer first
// receives a handshake byte.
type firstByte struct {
	net.Conn
	k    *proposalKernel
	once sync.Once
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if n > 0 {
		f.once.Do(func() { f.k.event("peer read a handshake byte") })
	}
	return n, err
}

// TestMPTCPProposalModel: on a kernel with the MPTCP kTLS series, the
// daemon attaches the ULP to the msk before the handshake, runs the
// handshake over the real MPTCP connection, installs keys on the msk
// (tolerating EEXIST from the second TCP_ULP) and answers 0; the keys it
// installed decrypt the peer's records and are decrypted by it.
func TestMPTCPProposalModel(t *testing.T) {
	consumer, peer := mptcpPair(t)
	k := &proposalKernel{}
	td := newTestDaemon(t, "")
	td.Installer = k
	td.keys.add(1, nvmeID, key32(1))
	td.start()
	p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{1}})
	srv := tls13.Server(&firstByte{Conn: peer, k: k}, &tls13.Config{GetPSK: func([]byte) (*tls13.PSK, error) {
		return &tls13.PSK{Key: key32(1), Hash: crypto.SHA256}, nil
	}})
	if err := srv.Handshake(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := wait(t, p)
	if r.Status != 0 {
		t.Fatalf("status %v, want 0\n%s", r.Status, td.logs)
	}
	want := "TCP_ULP tls, peer read a handshake byte, TCP_ULP EEXIST, TLS_TX, TLS_RX"
	if got := k.log(); got != want {
		t.Errorf("kernel saw %q, want %q", got, want)
	}
	fd := p.FD()
	k.mu.Lock()
	txi, rxi := k.tx[fd], k.rx[fd]
	k.mu.Unlock()
	rx, tx := newKernelRecords(t, rxi), newKernelRecords(t, txi)
	srv.Write([]byte("over MPTCP"))
	if got := rx.read(t, consumer); string(got) != "over MPTCP" {
		t.Errorf("msk read %q", got)
	}
	tx.write(t, consumer, []byte("ICReq"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "ICReq" {
		t.Errorf("peer read %q %v", buf, err)
	}
	td.stop(t)
	if !strings.Contains(td.logs.String(), "mptcp=true") || !strings.Contains(td.logs.String(), "result=ok") {
		t.Errorf("want an ok handshake line for MPTCP:\n%s", td.logs)
	}
}

// TestMPTCPProposalFallback: even on a kernel with the series, a socket
// that fell back to TCP cannot take kTLS: EOPNOTSUPP, no handshake.
func TestMPTCPProposalFallback(t *testing.T) {
	consumer, peer := mptcpPair(t)
	k := &proposalKernel{fallback: true}
	td := newTestDaemon(t, "")
	td.Installer = k
	td.keys.add(1, nvmeID, key32(1))
	td.start()
	p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{1}})
	if r := wait(t, p); r.Status != syscall.EOPNOTSUPP {
		t.Errorf("status %v, want EOPNOTSUPP\n%s", r.Status, td.logs)
	}
	consumer.Close()
	if n := peerBytes(t, peer); n != 0 {
		t.Errorf("the peer received %d bytes", n)
	}
	if got := k.log(); got != "" {
		t.Errorf("kernel saw %q, want nothing", got)
	}
	td.stop(t)
	if !strings.Contains(td.logs.String(), "fell back to plain TCP") {
		t.Errorf("want a line about the fallback:\n%s", td.logs)
	}
}

// peerBytes reads what reached the peer until the consumer's end closed.
func peerBytes(t *testing.T, peer net.Conn) int {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, peer)
	if err != nil {
		t.Errorf("reading at the peer: %v", err)
	}
	return int(n)
}

// TestRealMPTCPRefusal: a real MPTCP socket handed to the daemon on
// today's kernels (this host's, and Debian's 6.12 and 7.x in the VM) gets
// EOPNOTSUPP before any handshake byte, with one log line naming the
// missing kernel support; a TCP request right after it succeeds (with
// the kernel's kTLS where it is loaded, as in the VM).
func TestRealMPTCPRefusal(t *testing.T) {
	consumer, peer := mptcpPair(t)
	td := newTestDaemon(t, "")
	if kernelHasKTLS(t) {
		td.Installer = KTLS{}
	} else {
		t.Log("no kTLS here: the TCP request's keys are recorded, not installed")
	}
	td.keys.add(1, nvmeID, key32(1))
	td.start()
	start := time.Now()
	p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{1}})
	if r := wait(t, p); r.Status != syscall.EOPNOTSUPP {
		t.Errorf("MPTCP: status %v, want EOPNOTSUPP\n%s", r.Status, td.logs)
	}
	t.Logf("MPTCP refused %v after submission", time.Since(start))
	consumer.Close()
	if n := peerBytes(t, peer); n != 0 {
		t.Errorf("the peer received %d bytes of a handshake", n)
	}

	tcp, tpeer := socketPair(t)
	pt := td.fk.Submit(int(tcp.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
	go func() {
		// Stay connected: kTLS attaches only to an established socket.
		cli := tls13.Client(tpeer, &tls13.Config{PSKs: []tls13.PSK{{Identity: []byte(nvmeID), Key: key32(1), Hash: crypto.SHA256}}})
		cli.Handshake(context.Background())
	}()
	if r := wait(t, pt); r.Status != 0 {
		t.Errorf("TCP after MPTCP: status %v, want 0\n%s", r.Status, td.logs)
	}
	td.stop(t)
	var mp []string
	for _, l := range strings.Split(strings.TrimSpace(td.logs.String()), "\n") {
		if strings.Contains(l, "mptcp=true") {
			mp = append(mp, l)
		}
	}
	if len(mp) != 1 || !strings.Contains(mp[0], "the kernel lacks kTLS on MPTCP sockets") ||
		!strings.Contains(mp[0], "status="+statusName(syscall.EOPNOTSUPP)) || strings.Contains(mp[0], "suite=") {
		t.Errorf("want one MPTCP line naming the missing support, with no handshake:\n%s", td.logs)
	}
}

// kernelHasKTLS attaches the TLS ULP to a throwaway TCP socket, which
// also loads the tls module where it is available.
func kernelHasKTLS(t *testing.T) bool {
	t.Helper()
	c, _ := socketPair(t)
	err := ktls.AttachULP(int(c.Fd()))
	if err != nil && !errors.Is(err, ktls.ErrNoKTLS) {
		t.Fatalf("TLS ULP on TCP: %v", err)
	}
	return err == nil
}
