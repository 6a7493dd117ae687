package handshake

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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
	"github.com/tlshd-go/tlshd-go/rekey"
	"github.com/tlshd-go/tlshd-go/rekey/session"
)

// TestKeyUpdateVM plays the kernel's side of the KeyUpdate proposal (v7)
// on real kTLS sockets: the fake kernel hands the daemon a real socket for
// its first handshake (the production kTLS installer, sessions in the
// kernel keyring), then sends KeyUpdate upcalls with the id DONE
// returned, while the test reads and writes the socket's application data
// through kTLS as a kernel consumer would. Peers: the rekey package,
// OpenSSL s_server and s_client (PSK; "k" and "K" on their stdin send a
// KeyUpdate, the second with update_requested). The VM scenario keyupdate
// runs it (TLSHD_KEYUPDATE_VM=1); on a kernel whose kTLS cannot change
// keys (6.12) it checks the refusal instead.
func TestKeyUpdateVM(t *testing.T) {
	if os.Getenv("TLSHD_KEYUPDATE_VM") != "1" {
		t.Skip("needs real kTLS: the VM scenario keyupdate sets TLSHD_KEYUPDATE_VM=1")
	}
	stat, err := os.ReadFile("/proc/net/tls_stat")
	if err != nil {
		t.Fatalf("no kTLS here: %v", err)
	}
	v := newVMDriver(t)
	if !bytes.Contains(stat, []byte("TlsTxRekeyOk")) {
		t.Run("refusal", v.refusal)
		return
	}
	t.Run("rekey peer", func(t *testing.T) {
		c, p := v.rekeyPeer(t)
		before := tlsStat(t)
		v.threeKinds(t, c, p)
		after := tlsStat(t)
		// Consumer: TX 2 (send, rru), RX 3; the peer the other way round.
		for _, k := range []string{"TlsTxRekeyOk", "TlsRxRekeyOk"} {
			if d := after[k] - before[k]; d < 5 {
				t.Errorf("%s went up by %d, want 5", k, d)
			}
			vmResult(t, "rekey_peer_"+k, after[k]-before[k])
		}
	})
	for _, mode := range []string{"s_server", "s_client"} {
		t.Run("openssl "+mode, func(t *testing.T) {
			t, c, p := v.opensslPeer(t, mode)
			before := tlsStat(t)
			v.threeKinds(t, c, p)
			after := tlsStat(t)
			// Only the consumer's end is kTLS: TX 2, RX 3.
			tx, rx := after["TlsTxRekeyOk"]-before["TlsTxRekeyOk"], after["TlsRxRekeyOk"]-before["TlsRxRekeyOk"]
			if tx < 2 || rx < 3 {
				t.Errorf("kTLS rekeys TX %d RX %d, want 2 and 3", tx, rx)
			}
			vmResult(t, "openssl_"+mode+"_rekeys", fmt.Sprintf("tx%d,rx%d", tx, rx))
		})
	}
	t.Run("1000 updates", func(t *testing.T) {
		c, p := v.rekeyPeer(t)
		v.upcallTime, v.upcalls = 0, 0
		start := time.Now()
		n := 0
		for n < 1000 {
			v.threeKindsQuiet(t, c, p, n)
			n += 4 // send, received, received, received_request_update
		}
		vmResult(t, "updates_in_a_row", n)
		vmResult(t, "us_per_update_in_a_row", int(time.Since(start).Microseconds())/n)
		// Submit to DONE: the daemon's part (with the fake kernel's).
		vmResult(t, "us_submit_to_done", int(v.upcallTime.Microseconds())/v.upcalls)
		checkData(t, c, p, "after 1000")
	})
	t.Run("restart between updates", func(t *testing.T) {
		c, p := v.rekeyPeer(t)
		v.update(t, c, genl.KeyUpdateSend)
		checkToPeer(t, c, p, "before restart")
		v.restart(t)
		if c.keyUpdate(t) != 0 {
			t.Fatal("the answer requests an update")
		}
		v.update(t, c, genl.KeyUpdateReceived)
		checkData(t, c, p, "after restart")
	})
	t.Run("stale id", func(t *testing.T) {
		c, p := v.rekeyPeer(t)
		old := c.id
		v.update(t, c, genl.KeyUpdateSend)
		checkToPeer(t, c, p, "stale")
		c.keyUpdate(t)
		v.update(t, c, genl.KeyUpdateReceived)
		before := tlsStat(t)
		r := v.submit(t, c, genl.KeyUpdateSend, old)
		if r.Status != syscall.ENOKEY || r.SessionID != 0 {
			t.Fatalf("stale id: DONE %+v, want ENOKEY", r)
		}
		if d := tlsStat(t)["TlsTxRekeyOk"] - before["TlsTxRekeyOk"]; d != 0 {
			t.Errorf("a stale id rekeyed %d times", d)
		}
		checkData(t, c, p, "after a stale id")
	})
	t.Run("peer closes during update", func(t *testing.T) {
		c, p := v.rekeyPeer(t)
		if err := p.conn.Update(false); err != nil {
			t.Fatal(err)
		}
		p.conn.Close() // close_notify under its new key
		c.keyUpdate(t)
		r := v.submit(t, c, genl.KeyUpdateReceived, c.id)
		if r.Status != syscall.ECONNRESET {
			t.Fatalf("DONE %+v, want ECONNRESET (the peer's close_notify)", r)
		}
		// The daemon answered with close_notify.
		if _, err := p.conn.Read(make([]byte, 16)); err != io.EOF {
			t.Errorf("peer read %v, want our close_notify", err)
		}
	})
}

// vmResult prints a line the scenario turns into RESULT keyupdate.<key>.
func vmResult(t *testing.T, key string, v any) {
	t.Helper()
	fmt.Printf("KEYUPDATE-RESULT %s=%v\n", key, v)
}

func tlsStat(t testing.TB) map[string]int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tls_stat")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		var k string
		var n int
		if _, err := fmt.Sscan(line, &k, &n); err == nil {
			m[k] = n
		}
	}
	return m
}

type vmDriver struct {
	e    *kuEnv
	ring string
	t    *testing.T
	// Time from submit to DONE of the successful updates.
	upcallTime time.Duration
	upcalls    int
}

func newVMDriver(t *testing.T) *vmDriver {
	ring := testSessionRing(t)
	e := newKUEnv(t, fakekernel.KeyUpdateV7(), "", &session.Keyring{Name: ring, TTL: time.Hour})
	e.keys.add(7, nvmeID, key32(9))
	v := &vmDriver{e: e, ring: ring, t: t}
	v.real(e.Daemon)
	e.start()
	return v
}

// real makes a daemon use the kernel's kTLS: the production installer
// and the real socket for updates.
func (v *vmDriver) real(d *Daemon) {
	d.Installer = KTLS{}
	d.KeyUpdates.Socket = nil
}

// restart stops the daemon and starts a new one with a new store value
// on the same keyring, as a restarted process would find it.
func (v *vmDriver) restart(t *testing.T) {
	v.e.stop(t)
	gc, err := genl.NewConn(v.e.fk.Dial())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	v.e.store = &session.Keyring{Name: v.ring, TTL: time.Hour}
	v.e.Daemon = v.e.newDaemon(gc)
	v.real(v.e.Daemon)
	v.e.start()
}

// kconn is a kernel consumer's socket with kTLS.
type kconn struct {
	f    *os.File
	fd   int
	side genl.MessageType
	id   uint32
	buf  []byte
	data []byte // application data read, not yet consumed
}

func newKConn(t *testing.T, f *os.File, side genl.MessageType) *kconn {
	fd := int(f.Fd())
	// No read may hang the test.
	tv := unix.Timeval{Sec: 20}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &kconn{f: f, fd: fd, side: side, buf: make([]byte, 1<<14+1)}
}

// keyUpdate reads the peer's KeyUpdate (application data before it is
// kept) and returns its request_update; the next read must then fail with
// EKEYEXPIRED, as the proposal's consumers see it.
func (c *kconn) keyUpdate(t *testing.T) byte {
	t.Helper()
	for {
		typ, n, err := ktls.RecvRecord(c.fd, c.buf)
		if err != nil {
			t.Fatalf("consumer read: %v", err)
		}
		if typ == 23 {
			c.data = append(c.data, c.buf[:n]...)
			continue
		}
		if typ == 22 && n > 0 && c.buf[0] == 4 {
			continue // NewSessionTicket: the consumer drops it
		}
		if typ != 22 || n != 5 || c.buf[0] != 24 {
			t.Fatalf("consumer read record %d %x, want a KeyUpdate", typ, c.buf[:n])
		}
		req := c.buf[4]
		if _, _, err := ktls.RecvRecord(c.fd, c.buf); !errors.Is(err, syscall.EKEYEXPIRED) {
			t.Fatalf("read after KeyUpdate: %v, want EKEYEXPIRED", err)
		}
		return req
	}
}

// read returns n bytes of application data.
func (c *kconn) read(t *testing.T, n int) []byte {
	t.Helper()
	for len(c.data) < n {
		typ, m, err := ktls.RecvRecord(c.fd, c.buf)
		if err == nil && typ == 22 && m > 0 && c.buf[0] == 4 {
			continue // NewSessionTicket
		}
		if err != nil || typ != 23 {
			t.Fatalf("consumer read %d %x %v, want data", typ, c.buf[:m], err)
		}
		c.data = append(c.data, c.buf[:m]...)
	}
	got := bytes.Clone(c.data[:n])
	c.data = c.data[n:]
	return got
}

func (c *kconn) write(t *testing.T, p []byte) {
	t.Helper()
	if _, err := unix.Write(c.fd, p); err != nil {
		t.Fatalf("consumer write: %v", err)
	}
}

func (v *vmDriver) submit(t *testing.T, c *kconn, typ genl.KeyUpdateType, id uint32) fakekernel.Result {
	t.Helper()
	p, err := v.e.fk.SubmitKeyUpdate(c.fd, c.side, typ, id, fakekernel.Params{Auth: genl.PSK, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return wait(t, p)
}

func (v *vmDriver) update(t *testing.T, c *kconn, typ genl.KeyUpdateType) {
	t.Helper()
	start := time.Now()
	r := v.submit(t, c, typ, c.id)
	v.upcallTime += time.Since(start)
	v.upcalls++
	if r.Status != 0 || r.SessionID == 0 || r.SessionID == c.id {
		t.Fatalf("%v: DONE %+v (id was %d)\n%s", typ, r, c.id, v.e.logs)
	}
	c.id = r.SessionID
}

// first runs the daemon's first handshake on f.
func (v *vmDriver) first(t *testing.T, f *os.File, hello genl.MessageType, peer func()) *kconn {
	t.Helper()
	params := fakekernel.Params{MessageType: hello, Auth: genl.PSK, PeerIdentities: []int32{7}, Timeout: 20 * time.Second}
	if hello == genl.ServerHello {
		params.PeerIdentities = []int32{0}
	}
	p := v.e.fk.Submit(int(f.Fd()), params)
	if peer != nil {
		go peer()
	}
	r := wait(t, p)
	if r.Status != 0 || r.SessionID == 0 {
		t.Fatalf("first handshake: DONE %+v\n%s", r, v.e.logs)
	}
	side := genl.ClientKeyUpdate
	if hello == genl.ServerHello {
		side = genl.ServerKeyUpdate
	}
	c := newKConn(t, f, side)
	c.id = r.SessionID
	return c
}

// A vmPeer is the remote end: something that reads and writes
// application data and sends KeyUpdates.
type vmPeer interface {
	send(t *testing.T, p []byte)
	// recv waits for p.
	recv(t *testing.T, p []byte)
	// keyUpdate sends a KeyUpdate, with update_requested if asked.
	keyUpdate(t *testing.T, requested bool)
}

// rekeyPeerConn is the rekey package over kTLS as the peer.
type rekeyPeerConn struct{ conn *rekey.Conn }

func (p *rekeyPeerConn) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (p *rekeyPeerConn) recv(t *testing.T, b []byte) {
	t.Helper()
	got := make([]byte, len(b))
	if _, err := io.ReadFull(p.conn, got); err != nil || sha256.Sum256(got) != sha256.Sum256(b) {
		t.Fatalf("peer read %d bytes (%v), checksum differs", len(got), err)
	}
}

func (p *rekeyPeerConn) keyUpdate(t *testing.T, requested bool) {
	t.Helper()
	if err := p.conn.Update(requested); err != nil {
		t.Fatal(err)
	}
}

func (v *vmDriver) rekeyPeer(t *testing.T) (*kconn, *rekeyPeerConn) {
	t.Helper()
	consumer, peer := socketPair(t)
	var sess *tls13.Session
	var herr error
	done := make(chan struct{})
	c := v.first(t, consumer, genl.ClientHello, func() {
		defer close(done)
		srv := tls13.Server(peer, &tls13.Config{GetPSK: func(id []byte) (*tls13.PSK, error) {
			return &tls13.PSK{Key: key32(9), Hash: crypto.SHA256}, nil
		}})
		if herr = srv.Handshake(context.Background()); herr == nil {
			sess, herr = srv.Handoff()
		}
	})
	<-done
	if herr != nil {
		t.Fatal(herr)
	}
	pf, err := peer.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pf.Close() })
	tx, rx := rekey.SessionKeys(sess)
	if err := ktls.Install(int(pf.Fd()), tx, rx, ktls.Options{}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Sec: 20}
	unix.SetsockoptTimeval(int(pf.Fd()), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return c, &rekeyPeerConn{conn: rekey.New(rekey.KTLS{FD: int(pf.Fd())}, sess)}
}

func payload(t *testing.T, tag string) []byte {
	b := make([]byte, 1500)
	rand.Read(b)
	// Printable, one line, for OpenSSL's stdin and stdout.
	s := tag + "-" + hex.EncodeToString(b)[:2000] + "\n"
	return []byte(strings.ReplaceAll(s, " ", "_"))
}

func checkToPeer(t *testing.T, c *kconn, p vmPeer, tag string) {
	t.Helper()
	b := payload(t, "to-peer-"+tag)
	c.write(t, b)
	p.recv(t, b)
}

func checkFromPeer(t *testing.T, c *kconn, p vmPeer, tag string) {
	t.Helper()
	b := payload(t, "from-peer-"+tag)
	p.send(t, b)
	if got := c.read(t, len(b)); sha256.Sum256(got) != sha256.Sum256(b) {
		t.Fatalf("consumer read %q, checksum differs", got[:min(40, len(got))])
	}
}

func checkData(t *testing.T, c *kconn, p vmPeer, tag string) {
	t.Helper()
	checkToPeer(t, c, p, tag)
	checkFromPeer(t, c, p, tag)
}

// threeKinds runs SEND, RECEIVED and RECEIVED_REQUEST_UPDATE with data
// both ways after each.
func (v *vmDriver) threeKinds(t *testing.T, c *kconn, p vmPeer) {
	t.Helper()
	checkData(t, c, p, "first")
	// SEND: the peer, asked, answers with a KeyUpdate of its own, which
	// the consumer meets as RECEIVED.
	// OpenSSL sends its answer before its next write.
	v.update(t, c, genl.KeyUpdateSend)
	checkToPeer(t, c, p, "send")
	b := payload(t, "from-peer-after-send")
	p.send(t, b)
	if c.keyUpdate(t) != 0 {
		t.Fatal("the peer's answer requests an update")
	}
	v.update(t, c, genl.KeyUpdateReceived)
	if got := c.read(t, len(b)); sha256.Sum256(got) != sha256.Sum256(b) {
		t.Fatal("consumer read: checksum differs")
	}
	checkData(t, c, p, "send")
	// RECEIVED.
	p.keyUpdate(t, false)
	if c.keyUpdate(t) != 0 {
		t.Fatal("update requested")
	}
	v.update(t, c, genl.KeyUpdateReceived)
	checkData(t, c, p, "received")
	// RECEIVED_REQUEST_UPDATE.
	p.keyUpdate(t, true)
	if c.keyUpdate(t) != 1 {
		t.Fatal("update not requested")
	}
	v.update(t, c, genl.KeyUpdateReceivedRequestUpdate)
	checkData(t, c, p, "received_request_update")
}

// threeKindsQuiet is threeKinds with one small message each way per
// round.
func (v *vmDriver) threeKindsQuiet(t *testing.T, c *kconn, p *rekeyPeerConn, i int) {
	t.Helper()
	msg := []byte(fmt.Sprintf("round %d\n", i))
	v.update(t, c, genl.KeyUpdateSend)
	c.write(t, msg)
	p.recv(t, msg)
	c.keyUpdate(t)
	v.update(t, c, genl.KeyUpdateReceived)
	p.keyUpdate(t, false)
	c.keyUpdate(t)
	v.update(t, c, genl.KeyUpdateReceived)
	p.keyUpdate(t, true)
	c.keyUpdate(t)
	v.update(t, c, genl.KeyUpdateReceivedRequestUpdate)
	p.send(t, msg)
	if got := c.read(t, len(msg)); !bytes.Equal(got, msg) {
		t.Fatalf("read %q want %q", got, msg)
	}
}

// refusal: a kernel whose kTLS cannot change keys. The first handshake
// works; an update is refused with EOPNOTSUPP after close_notify, and the
// session is forgotten.
func (v *vmDriver) refusal(t *testing.T) {
	c, _ := v.rekeyPeer(t)
	old := c.id
	r := v.submit(t, c, genl.KeyUpdateReceived, c.id)
	if r.Status != syscall.EOPNOTSUPP {
		t.Fatalf("DONE %+v, want EOPNOTSUPP\n%s", r, v.e.logs)
	}
	if r := v.submit(t, c, genl.KeyUpdateReceived, old); r.Status != syscall.ENOKEY {
		t.Errorf("the refused session is still kept: DONE %+v", r)
	}
	vmResult(t, "refusal", "EOPNOTSUPP")
}

// opensslPeer runs OpenSSL as the peer: s_server (the daemon is the
// client) or s_client (the daemon is the server), PSK, TLS 1.3.
func (v *vmDriver) opensslPeer(t *testing.T, mode string) (*testing.T, *kconn, vmPeer) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal(err)
	}
	common := []string{"-tls1_3", "-psk", hex.EncodeToString(key32(9)), "-psk_identity", nvmeID}
	op := &opensslProc{lines: make(chan string, 1024)}
	var c *kconn
	if mode == "s_server" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		op.start(t, append([]string{"s_server", "-nocert", "-num_tickets", "0", "-accept", addr}, common...))
		op.waitFor(t, "ACCEPT")
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		f := fileOf(t, raw)
		c = v.first(t, f, genl.ClientHello, nil)
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		op.start(t, append([]string{"s_client", "-connect", l.Addr().String()}, common...))
		raw, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		f := fileOf(t, raw)
		c = v.first(t, f, genl.ServerHello, nil)
	}
	return t, c, op
}

// opensslProc is an OpenSSL s_server or s_client with its stdin and
// stdout.
type opensslProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	seen  []string
}

func (o *opensslProc) start(t *testing.T, args []string) {
	t.Helper()
	o.cmd = exec.Command("openssl", args...)
	var err error
	if o.stdin, err = o.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := o.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	o.cmd.Stderr = o.cmd.Stdout
	if err := o.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.stdin.Close()
		o.cmd.Process.Kill()
		o.cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			o.lines <- sc.Text()
		}
		close(o.lines)
	}()
}

// waitFor waits for a line of output containing s.
func (o *opensslProc) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-o.lines:
			if !ok {
				t.Fatalf("openssl exited before printing %q", s)
			}
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("openssl did not print %q", s[:min(len(s), 60)])
		}
	}
}

func (o *opensslProc) send(t *testing.T, p []byte) {
	t.Helper()
	if _, err := o.stdin.Write(p); err != nil {
		t.Fatal(err)
	}
}

func (o *opensslProc) recv(t *testing.T, p []byte) {
	t.Helper()
	o.waitFor(t, strings.TrimSuffix(string(p), "\n"))
}

func (o *opensslProc) keyUpdate(t *testing.T, requested bool) {
	t.Helper()
	cmd := "k\n"
	if requested {
		cmd = "K\n"
	}
	o.send(t, []byte(cmd))
}

// fileOf hands a connection's socket over as a file (the consumer's end a
// test submits), closing the net.Conn; the file is closed at cleanup.
func fileOf(t *testing.T, c net.Conn) *os.File {
	t.Helper()
	f, err := c.(*net.TCPConn).File()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
