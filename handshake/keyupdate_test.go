package handshake

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/ktls/ktlstest"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
	"github.com/tlshd-go/tlshd-go/rekey"
	"github.com/tlshd-go/tlshd-go/rekey/session"
)

// kmodel is the kTLS state of one consumer's socket in userspace: the
// daemon's KeyUpdate walk changes its keys and sends through it (as
// rekey.KeySocket), the test reads and writes application data through it
// as the kernel consumer would.
type kmodel struct {
	mu             sync.Mutex
	f              *os.File // the consumer's end
	tx, rx         *ktlstest.Direction
	sent           int       // records the daemon sent
	txSets, rxSets int       // keys the daemon set
	failRX         error     // SetRX fails with it
	deadline       time.Time // the update request's, for SendRecord
	pendTyp        uint8     // a record peeked, not yet read
	pend           []byte
	pendOK         bool
}

func newKModel(t testing.TB, f *os.File, txInfo, rxInfo []byte) *kmodel {
	t.Helper()
	dir := func(info []byte) *ktlstest.Direction {
		k, err := ktls.ParseCryptoInfo(info)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ktlstest.NewDirection(k)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return &kmodel{f: f, tx: dir(txInfo), rx: dir(rxInfo)}
}

func (m *kmodel) SendRecord(typ uint8, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent++
	// Sent as rekey.KTLS sends: waiting for room no later than the
	// request's deadline (the cmsg is ignored without kTLS).
	return ktls.SendRecordBy(int(m.f.Fd()), typ, m.tx.Seal(typ, data), m.deadline)
}

func (m *kmodel) SetTX(k ktls.Keys) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := ktlstest.NewDirection(k)
	if err != nil {
		return err
	}
	m.tx = d
	m.txSets++
	return nil
}

func (m *kmodel) SetRX(k ktls.Keys) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failRX != nil {
		return m.failRX
	}
	d, err := ktlstest.NewDirection(k)
	if err != nil {
		return err
	}
	m.rx = d
	m.rxSets++
	return nil
}

// PeekRecord: a record that has arrived, decrypted and kept for read.
func (m *kmodel) PeekRecord(buf []byte) (uint8, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.pendOK {
		fds := []unix.PollFd{{Fd: int32(m.f.Fd()), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 0); n == 0 {
			return 0, 0, syscall.EAGAIN
		}
		typ, data, err := m.rx.ReadRecord(m.f)
		if err != nil {
			return 0, 0, syscall.EBADMSG
		}
		m.pendTyp, m.pend, m.pendOK = typ, data, true
	}
	return m.pendTyp, copy(buf, m.pend), nil
}

// read is the consumer reading one record.
func (m *kmodel) read(t testing.TB) (uint8, []byte) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pendOK {
		m.pendOK = false
		return m.pendTyp, m.pend
	}
	typ, data, err := m.rx.ReadRecord(m.f)
	if err != nil {
		t.Fatalf("consumer read: %v", err)
	}
	return typ, data
}

// write is the consumer sending one record.
func (m *kmodel) write(t testing.TB, typ uint8, data []byte) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.f.Write(m.tx.Seal(typ, data)); err != nil {
		t.Fatal(err)
	}
}

func (m *kmodel) counts() (sent, txSets, rxSets int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent, m.txSets, m.rxSets
}

type inode struct{ dev, ino uint64 }

func inodeOf(fd int) inode {
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	return inode{uint64(st.Dev), st.Ino}
}

// kuEnv is a daemon on a fake kernel of a given profile, keeping sessions
// in store, with kTLS modelled per socket.
type kuEnv struct {
	*testDaemon
	store  session.Store
	mu     sync.Mutex
	models map[inode]*kmodel
}

func newKUEnv(t testing.TB, cfg fakekernel.Config, policy string, store session.Store) *kuEnv {
	t.Helper()
	fk := fakekernel.New(cfg)
	gc, err := genl.NewConn(fk.Dial())
	if err != nil {
		t.Fatal(err)
	}
	e := &kuEnv{store: store, models: map[inode]*kmodel{}}
	e.testDaemon = &testDaemon{fk: fk, keys: newMemKeyring(), inst: &recordingInstaller{},
		policy: config.NewHolder(mustPolicy(t, policy)), logs: &testtool.Buffer{}}
	e.Daemon = e.newDaemon(gc)
	t.Cleanup(func() {
		e.stop(t)
		gc.Close()
	})
	return e
}

func (e *kuEnv) newDaemon(k Kernel) *Daemon {
	return &Daemon{
		Kernel:    k,
		Ready:     readyChan{c: e.fk.Ready()},
		Keyring:   e.keys,
		Installer: e.inst,
		Policy:    e.policy.Load,
		Log:       slog.New(slog.NewTextHandler(e.logs, nil)),
		KeyUpdates: &KeyUpdates{Store: e.store, Socket: func(fd int, deadline time.Time) rekey.KeySocket {
			e.mu.Lock()
			defer e.mu.Unlock()
			m := e.models[inodeOf(fd)]
			if m != nil {
				m.mu.Lock()
				m.deadline = deadline
				m.mu.Unlock()
			}
			return m
		}},
	}
}

// conn is one consumer's end after its first handshake.
type conn struct {
	f    *os.File
	side genl.MessageType // ClientKeyUpdate or ServerKeyUpdate
	auth genl.AuthMode
	id   uint32
	m    *kmodel
}

// pair runs both first handshakes of a connection through the daemon and
// models kTLS on both ends.
func (e *kuEnv) pair(t testing.TB, params [2]fakekernel.Params) (c, s *conn) {
	t.Helper()
	client, server := params[0], params[1]
	cf, sf := consumerPair(t)
	pc := e.fk.Submit(int(cf.Fd()), client)
	ps := e.fk.Submit(int(sf.Fd()), server)
	rc, rs := wait(t, pc), wait(t, ps)
	if rc.Status != 0 || rs.Status != 0 {
		t.Fatalf("client %+v server %+v\n%s", rc, rs, e.logs)
	}
	c = &conn{f: cf, side: genl.ClientKeyUpdate, auth: client.Auth, id: rc.SessionID,
		m: newKModel(t, cf, e.inst.txInfo(pc.FD()), e.inst.rxInfo(pc.FD()))}
	s = &conn{f: sf, side: genl.ServerKeyUpdate, auth: server.Auth, id: rs.SessionID,
		m: newKModel(t, sf, e.inst.txInfo(ps.FD()), e.inst.rxInfo(ps.FD()))}
	e.mu.Lock()
	e.models[inodeOf(int(cf.Fd()))], e.models[inodeOf(int(sf.Fd()))] = c.m, s.m
	e.mu.Unlock()
	return c, s
}

// update sends one KeyUpdate upcall for c and returns DONE.
func (e *kuEnv) update(t testing.TB, c *conn, typ genl.KeyUpdateType, id uint32) fakekernel.Result {
	t.Helper()
	return e.updateWithin(t, c, typ, id, 10*time.Second)
}

// updateWithin is update with the kernel's TIMEOUT for the request.
func (e *kuEnv) updateWithin(t testing.TB, c *conn, typ genl.KeyUpdateType, id uint32, timeout time.Duration) fakekernel.Result {
	t.Helper()
	p, err := e.fk.SubmitKeyUpdate(int(c.f.Fd()), c.side, typ, id, fakekernel.Params{Auth: c.auth, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return wait(t, p)
}

// mustUpdate is update that must succeed; c's id moves on.
func (e *kuEnv) mustUpdate(t testing.TB, c *conn, typ genl.KeyUpdateType) {
	t.Helper()
	r := e.update(t, c, typ, c.id)
	if r.Status != 0 || r.SessionID == 0 || r.SessionID == c.id {
		t.Fatalf("%v: DONE %+v (old id %d)\n%s", typ, r, c.id, e.logs)
	}
	if _, err := e.store.Get(c.id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("%v: the previous generation's state is still kept (%v)", typ, err)
	}
	c.id = r.SessionID
}

// expectKeyUpdate has c read the peer's KeyUpdate and returns its
// request_update.
func expectKeyUpdate(t testing.TB, c *conn) byte {
	t.Helper()
	typ, data := c.m.read(t)
	if typ != 22 || len(data) != 5 || data[0] != 24 {
		t.Fatalf("read %d %x, want a KeyUpdate", typ, data)
	}
	return data[4]
}

// exchange sends checksummed data both ways.
func exchange(t testing.TB, a, b *conn, tag string) {
	t.Helper()
	for _, x := range []struct{ from, to *conn }{{a, b}, {b, a}} {
		msg := []byte(fmt.Sprintf("%v→ %s", x.from.side, tag))
		x.from.m.write(t, 23, msg)
		typ, got := x.to.m.read(t)
		if typ != 23 || !bytes.Equal(got, msg) {
			t.Fatalf("read %d %q, want %q", typ, got, msg)
		}
	}
}

// updateAll runs the three request kinds between two consumers whose
// sockets the daemon handshook, as the kernel would ask for them.
func updateAll(t testing.TB, e *kuEnv, c, s *conn, rounds int) {
	t.Helper()
	exchange(t, c, s, "before")
	for i := range rounds {
		// SEND on the client; the server's consumer sees a KeyUpdate
		// with update_requested: RECEIVED_REQUEST_UPDATE; the client's
		// then sees the answer: RECEIVED.
		e.mustUpdate(t, c, genl.KeyUpdateSend)
		if expectKeyUpdate(t, s) != 1 {
			t.Fatal("SEND's KeyUpdate does not request an update")
		}
		e.mustUpdate(t, s, genl.KeyUpdateReceivedRequestUpdate)
		if expectKeyUpdate(t, c) != 0 {
			t.Fatal("the answer requests an update")
		}
		e.mustUpdate(t, c, genl.KeyUpdateReceived)
		exchange(t, c, s, fmt.Sprintf("round %d, client sent", i))
		// The same, server first.
		e.mustUpdate(t, s, genl.KeyUpdateSend)
		expectKeyUpdate(t, c)
		e.mustUpdate(t, c, genl.KeyUpdateReceivedRequestUpdate)
		expectKeyUpdate(t, s)
		e.mustUpdate(t, s, genl.KeyUpdateReceived)
		exchange(t, c, s, fmt.Sprintf("round %d, server sent", i))
	}
}

func pskParams() [2]fakekernel.Params {
	return [2]fakekernel.Params{
		{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{7}},
		{MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{0}}}
}

func TestKeyUpdatePSK(t *testing.T) {
	store := &session.Memory{}
	e := newKUEnv(t, fakekernel.KeyUpdateV7(), "", store)
	e.keys.add(7, nvmeID, key32(3))
	e.start()
	c, s := e.pair(t, pskParams())
	if c.id == 0 || s.id == 0 || store.Len() != 2 {
		t.Fatalf("session ids %d %d, %d kept; want two\n%s", c.id, s.id, store.Len(), e.logs)
	}
	st, err := store.Get(c.id)
	if err != nil || !st.Client || st.TXGen != 0 {
		t.Fatalf("client state %+v %v", st, err)
	}
	updateAll(t, e, c, s, 3)
	if store.Len() != 2 {
		t.Errorf("%d sessions kept after updates, want 2", store.Len())
	}
	// RFC 8446 7.2 generations: each side sent 6 and received 6.
	for _, x := range []*conn{c, s} {
		st, err := store.Get(x.id)
		if err != nil || st.TXGen != 6 || st.RXGen != 6 {
			t.Errorf("%v state %+v %v, want generation 6 both ways", x.side, st, err)
		}
		_, txSets, rxSets := x.m.counts()
		if txSets != 6 || rxSets != 6 {
			t.Errorf("%v: %d TX and %d RX keys set, want 6 and 6", x.side, txSets, rxSets)
		}
	}
	if !bytes.Contains(e.logs.Bytes(), []byte("key_update=received_request_update")) {
		t.Errorf("no log line names the update:\n%s", e.logs)
	}
	if n := e.fk.OpenFDs(); n != 0 {
		t.Errorf("%d handed-over fds open", n)
	}
}

func TestKeyUpdateX509(t *testing.T) {
	p := newPKI(t)
	e := newKUEnv(t, fakekernel.KeyUpdateV7(), p.policy("", `client_certificate = "required"`), &session.Memory{})
	e.start()
	c, s := e.pair(t, [2]fakekernel.Params{
		{MessageType: genl.ClientHello, Auth: genl.X509, PeerName: "nfs.example.com"},
		{MessageType: genl.ServerHello, Auth: genl.X509}})
	if c.id == 0 || s.id == 0 {
		t.Fatalf("session ids %d %d", c.id, s.id)
	}
	updateAll(t, e, c, s, 2)
}

// TestKeyUpdateOffWithoutSessionID: kernels whose DONE has no SESSION_ID
// (6.12) or has attribute 4 as TAG, a string, get no session kept and no
// attribute 4.
func TestKeyUpdateOffWithoutSessionID(t *testing.T) {
	for name, cfg := range map[string]fakekernel.Config{"6.12": fakekernel.Linux612(), "session tags": fakekernel.SessionTags()} {
		t.Run(name, func(t *testing.T) {
			store := &session.Memory{}
			e := newKUEnv(t, cfg, "", store)
			e.keys.add(7, nvmeID, key32(3))
			e.start()
			cf, sf := consumerPair(t)
			params := pskParams()
			pc := e.fk.Submit(int(cf.Fd()), params[0])
			ps := e.fk.Submit(int(sf.Fd()), params[1])
			for _, r := range []fakekernel.Result{wait(t, pc), wait(t, ps)} {
				if r.Status != 0 || r.SessionID != 0 || len(r.Tags) != 0 {
					t.Errorf("DONE %+v, want success without attribute 4", r)
				}
			}
			if store.Len() != 0 {
				t.Errorf("%d sessions kept on a kernel without the upcall", store.Len())
			}
			if _, err := e.fk.SubmitKeyUpdate(int(cf.Fd()), genl.ClientKeyUpdate, genl.KeyUpdateSend, 1, fakekernel.Params{}); err == nil {
				t.Error("the fake took a KeyUpdate request on a kernel without them")
			}
		})
	}
}

// TestKeyUpdateRefusals: requests that find no session of theirs are
// answered ENOKEY and touch nothing; an unknown update type EINVAL.
func TestKeyUpdateRefusals(t *testing.T) {
	store := &session.Memory{}
	e := newKUEnv(t, fakekernel.KeyUpdateV7(), "", store)
	e.keys.add(7, nvmeID, key32(3))
	e.start()
	c, s := e.pair(t, pskParams())
	stale := c.id
	e.mustUpdate(t, c, genl.KeyUpdateSend)
	expectKeyUpdate(t, s)
	e.mustUpdate(t, s, genl.KeyUpdateReceivedRequestUpdate)
	expectKeyUpdate(t, c)
	e.mustUpdate(t, c, genl.KeyUpdateReceived)
	sent, tx, rx := c.m.counts()
	for _, tc := range []struct {
		name string
		c    *conn
		typ  genl.KeyUpdateType
		id   uint32
		want syscall.Errno
	}{
		{"stale id", c, genl.KeyUpdateSend, stale, syscall.ENOKEY},
		{"no id", c, genl.KeyUpdateReceived, 0, syscall.ENOKEY},
		{"unknown id", c, genl.KeyUpdateReceived, 1 << 30, syscall.ENOKEY},
		{"other role", &conn{f: c.f, side: genl.ServerKeyUpdate, auth: genl.PSK, m: c.m}, genl.KeyUpdateSend, c.id, syscall.ENOKEY},
		{"other socket's session", &conn{f: c.f, side: genl.ServerKeyUpdate, auth: genl.PSK, m: c.m}, genl.KeyUpdateSend, s.id, syscall.ENOKEY},
		{"unspec", c, genl.KeyUpdateUnspec, c.id, syscall.EINVAL},
		{"unknown type", c, 9, c.id, syscall.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.update(t, tc.c, tc.typ, tc.id)
			if r.Status != tc.want || r.SessionID != 0 {
				t.Fatalf("DONE %+v, want %v without a session id", r, tc.want)
			}
		})
	}
	if s2, tx2, rx2 := c.m.counts(); s2 != sent || tx2 != tx || rx2 != rx {
		t.Errorf("refused requests touched the socket: sent %d→%d, TX %d→%d, RX %d→%d", sent, s2, tx, tx2, rx, rx2)
	}
	if store.Len() != 2 {
		t.Errorf("%d sessions kept, want 2", store.Len())
	}
	// The connection still works, and updates.
	exchange(t, c, s, "after refusals")
	e.mustUpdate(t, c, genl.KeyUpdateSend)
	expectKeyUpdate(t, s)
	if !bytes.Contains(e.logs.Bytes(), []byte("status=ENOKEY")) {
		t.Errorf("refusal not logged:\n%s", e.logs)
	}
}

// newKUPair is a started daemon on a v7 kernel keeping sessions in store,
// and one PSK connection through it (client and server ends).
func newKUPair(t *testing.T, store session.Store) (e *kuEnv, c, s *conn) {
	t.Helper()
	e = newKUEnv(t, fakekernel.KeyUpdateV7(), "", store)
	e.keys.add(7, nvmeID, key32(3))
	e.start()
	c, s = e.pair(t, pskParams())
	return e, c, s
}

// TestKeyUpdateFailures: a failure after the session was found ends the
// TLS session with close_notify and forgets it; the peer's close_notify
// and alerts during an update have statuses of their own.
func TestKeyUpdateFailures(t *testing.T) {
	t.Run("RX refused", func(t *testing.T) {
		store := &session.Memory{}
		e, c, s := newKUPair(t, store)
		e.mustUpdate(t, s, genl.KeyUpdateSend)
		expectKeyUpdate(t, c)
		c.m.failRX = syscall.EBUSY // a kernel without kTLS rekey
		r := e.update(t, c, genl.KeyUpdateReceivedRequestUpdate, c.id)
		if r.Status != syscall.EOPNOTSUPP || r.SessionID != 0 {
			t.Fatalf("DONE %+v, want EOPNOTSUPP", r)
		}
		if typ, data := s.m.read(t); typ != 21 || !bytes.Equal(data, []byte{1, 0}) {
			t.Errorf("peer read %d %x, want close_notify", typ, data)
		}
		if _, err := store.Get(c.id); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("a failed session is still kept: %v", err)
		}
	})
	t.Run("peer stopped reading", func(t *testing.T) {
		// The client's send buffer is full and the server's consumer
		// reads nothing: the KeyUpdate (and the close_notify after it)
		// find no room, and DONE comes by the request's deadline.
		store := &session.Memory{}
		e, c, _ := newKUPair(t, store)
		fd := int(c.f.Fd())
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
			t.Fatal(err)
		}
		for full := 0; full < 5; {
			if _, err := unix.SendmsgN(fd, make([]byte, 4096), nil, nil, unix.MSG_DONTWAIT); err == unix.EAGAIN {
				full++
				time.Sleep(20 * time.Millisecond)
			} else if err != nil {
				t.Fatal(err)
			} else {
				full = 0
			}
		}
		r := e.updateWithin(t, c, genl.KeyUpdateSend, c.id, 500*time.Millisecond)
		if r.Status != syscall.ETIMEDOUT || r.SessionID != 0 {
			t.Fatalf("DONE %+v, want ETIMEDOUT\n%s", r, e.logs)
		}
		if _, err := store.Get(c.id); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("a failed session is still kept: %v", err)
		}
	})
	for _, tc := range []struct {
		name  string
		alert []byte
		want  syscall.Errno
	}{
		{"peer close_notify", []byte{1, 0}, syscall.ECONNRESET},
		{"peer fatal alert", []byte{2, 40}, syscall.EPROTO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &session.Memory{}
			e, c, s := newKUPair(t, store)
			// The server updates and asks; then its consumer ends the
			// connection before the client's update is served.
			e.mustUpdate(t, s, genl.KeyUpdateSend)
			s.m.write(t, 21, tc.alert)
			expectKeyUpdate(t, c)
			r := e.update(t, c, genl.KeyUpdateReceivedRequestUpdate, c.id)
			if r.Status != tc.want || r.SessionID != 0 {
				t.Fatalf("DONE %+v, want %v\n%s", r, tc.want, e.logs)
			}
			// Our KeyUpdate, then our close_notify under the new key,
			// which the server's update finds waiting.
			if expectKeyUpdate(t, s) != 0 {
				t.Fatal("the answer requests an update")
			}
			if r := e.update(t, s, genl.KeyUpdateReceived, s.id); r.Status != syscall.ECONNRESET {
				t.Errorf("the server's update: DONE %+v, want ECONNRESET (our close_notify)", r)
			}
			if typ, data := s.m.read(t); typ != 21 || !bytes.Equal(data, []byte{1, 0}) {
				t.Errorf("peer read %d %x, want close_notify", typ, data)
			}
			if _, err := store.Get(c.id); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("a closed session is still kept: %v", err)
			}
		})
	}
}

// TestKeyUpdateAcrossRestart keeps sessions in the kernel's keyring (a
// test keyring of its own): a daemon stopped and started again, with a
// new key thread, serves the next update.
func TestKeyUpdateAcrossRestart(t *testing.T) {
	name := testSessionRing(t)
	e := newKUEnv(t, fakekernel.KeyUpdateV7(), "", &session.Keyring{Name: name, TTL: time.Hour})
	e.keys.add(7, nvmeID, key32(3))
	e.start()
	c, s := e.pair(t, pskParams())
	e.mustUpdateVia(t, c, genl.KeyUpdateSend)
	expectKeyUpdate(t, s)

	// Restart: a new Daemon, a new store value, the same keyring.
	e.stop(t)
	gc, err := genl.NewConn(e.fk.Dial())
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	e.store = &session.Keyring{Name: name, TTL: time.Hour}
	e.Daemon = e.newDaemon(gc)
	e.start()
	e.mustUpdateVia(t, s, genl.KeyUpdateReceivedRequestUpdate)
	expectKeyUpdate(t, c)
	e.mustUpdateVia(t, c, genl.KeyUpdateReceived)
	exchange(t, c, s, "after a restart")
}

// testSessionRing returns the name of a session keyring of the test's own,
// destroyed when it ends; it skips (outside CI) where keyrings are refused.
func testSessionRing(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("tlshd-go:sessions-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	onThread := func(f func(k *session.Keyring) error) error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // its keyring goes with the thread
			errc <- f(&session.Keyring{Name: name})
		}()
		return <-errc
	}
	if err := onThread((*session.Keyring).Open); err != nil {
		if (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EACCES)) && os.Getenv("CI") != "true" {
			t.Skipf("no keyrings here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		onThread(func(k *session.Keyring) error {
			if err := k.Open(); err != nil {
				return err
			}
			_, err := unix.KeyctlInt(unix.KEYCTL_INVALIDATE, int(k.Ring()), 0, 0, 0)
			return err
		})
	})
	return name
}

// mustUpdateVia is mustUpdate for a store the test cannot read directly
// (a keyring possessed by the daemon's key thread).
func (e *kuEnv) mustUpdateVia(t testing.TB, c *conn, typ genl.KeyUpdateType) {
	t.Helper()
	r := e.update(t, c, typ, c.id)
	if r.Status != 0 || r.SessionID == 0 || r.SessionID == c.id {
		t.Fatalf("%v: DONE %+v (old id %d)\n%s", typ, r, c.id, e.logs)
	}
	// The old generation is gone: asking with it is refused.
	if r := e.update(t, c, typ, c.id); r.Status != syscall.ENOKEY {
		t.Fatalf("%v with the replaced id: DONE %+v, want ENOKEY", typ, r)
	}
	c.id = r.SessionID
}

// BenchmarkKeyUpdate: the daemon's side of KeyUpdate upcalls on the v7
// fake kernel (ACCEPT, store, rekey.Step on modelled kTLS, DONE), per
// update: each iteration is SEND, RECEIVED_REQUEST_UPDATE on the peer and
// RECEIVED, three upcalls.
func BenchmarkKeyUpdate(b *testing.B) {
	for _, bc := range []struct {
		name  string
		store func() session.Store
	}{
		{"memory", func() session.Store { return &session.Memory{} }},
		{"keyring", func() session.Store { return &session.Keyring{Name: testSessionRing(b), TTL: time.Hour} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newKUEnv(b, fakekernel.KeyUpdateV7(), "", bc.store())
			e.Log = discardLogger()
			e.keys.add(7, nvmeID, key32(3))
			e.start()
			c, s := e.pair(b, pskParams())
			b.ResetTimer()
			for range b.N {
				e.benchUpdate(b, c, genl.KeyUpdateSend)
				expectKeyUpdate(b, s)
				e.benchUpdate(b, s, genl.KeyUpdateReceivedRequestUpdate)
				expectKeyUpdate(b, c)
				e.benchUpdate(b, c, genl.KeyUpdateReceived)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(3*b.N), "ns/update")
		})
	}
}

func (e *kuEnv) benchUpdate(b *testing.B, c *conn, typ genl.KeyUpdateType) {
	r := e.update(b, c, typ, c.id)
	if r.Status != 0 {
		b.Fatalf("%v: DONE %+v", typ, r)
	}
	c.id = r.SessionID
}

// failingDelete is a Store whose Delete fails.
type failingDelete struct{ session.Store }

func (failingDelete) Delete(uint32) error { return errors.New("keyctl: Permission denied") }

// TestKeyUpdateDeadlineAndOldState: the update's sends are bounded by the
// kernel's TIMEOUT from ACCEPT, or by the default handshake timeout when
// the request has none; a previous generation the store cannot destroy
// does not fail the update, and the log says so.
func TestKeyUpdateDeadlineAndOldState(t *testing.T) {
	e, c, s := newKUPair(t, failingDelete{&session.Memory{}})
	// Each side sends one update (a second send would need the peer's
	// received update first).
	for _, tc := range []struct {
		from, to      *conn
		timeout, want time.Duration
	}{
		{c, s, 0, config.DefaultHandshakeTimeout},
		{s, c, 2 * time.Second, 2 * time.Second},
	} {
		before := time.Now()
		r := e.updateWithin(t, tc.from, genl.KeyUpdateSend, tc.from.id, tc.timeout)
		if r.Status != 0 {
			t.Fatalf("TIMEOUT %v: DONE %+v\n%s", tc.timeout, r, e.logs)
		}
		tc.from.id = r.SessionID
		expectKeyUpdate(t, tc.to)
		tc.from.m.mu.Lock()
		got := tc.from.m.deadline.Sub(before)
		tc.from.m.mu.Unlock()
		if got < tc.want-time.Second || got > tc.want+time.Second {
			t.Errorf("TIMEOUT %v: the sends' deadline is %v after the submit, want about %v", tc.timeout, got, tc.want)
		}
	}
	if n := strings.Count(e.logs.String(), "destroying the previous generation's state"); n != 2 {
		t.Errorf("%d warnings about the old state, want 2:\n%s", n, e.logs)
	}
}
