package handshake

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// TestDoneStatusEveryAlert maps every alert, sent and received, to its
// DONE status: unknown_psk_identity either way is EKEYREJECTED, an
// internal_error we sent is our fault (EIO), and anything else, including
// an internal_error the peer sent, is an authentication failure (EACCES).
func TestDoneStatusEveryAlert(t *testing.T) {
	alerts := []tls13.Alert{
		tls13.AlertCloseNotify, tls13.AlertUnexpectedMessage, tls13.AlertBadRecordMAC, tls13.AlertRecordOverflow,
		tls13.AlertHandshakeFailure, tls13.AlertBadCertificate, tls13.AlertUnsupportedCertificate,
		tls13.AlertCertificateRevoked, tls13.AlertCertificateExpired, tls13.AlertCertificateUnknown,
		tls13.AlertIllegalParameter, tls13.AlertUnknownCA, tls13.AlertAccessDenied, tls13.AlertDecodeError,
		tls13.AlertDecryptError, tls13.AlertProtocolVersion, tls13.AlertInsufficientSecurity,
		tls13.AlertInternalError, tls13.AlertInappropriateFallback, tls13.AlertUserCanceled,
		tls13.AlertMissingExtension, tls13.AlertUnsupportedExtension, tls13.AlertUnrecognizedName,
		tls13.AlertBadCertificateStatus, tls13.AlertUnknownPSKIdentity, tls13.AlertCertificateRequired,
		tls13.AlertNoApplicationProtocol,
	}
	for _, a := range alerts {
		for _, received := range []bool{false, true} {
			want := syscall.EACCES
			switch {
			case a == tls13.AlertUnknownPSKIdentity:
				want = syscall.EKEYREJECTED
			case a == tls13.AlertInternalError && !received:
				want = syscall.EIO
			}
			err := fmt.Errorf("handshake: %w", &tls13.AlertError{Alert: a, Received: received})
			if got := doneStatus(err); got != want {
				t.Errorf("alert %v received=%v: status %v, want %v", a, received, got, want)
			}
		}
	}
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{fmt.Errorf("%w: x", errPolicy), syscall.EACCES},
		{&ktls.InstallError{Step: ktls.StepULP, Err: ktls.ErrULPUnsupported}, syscall.EOPNOTSUPP},
		{fmt.Errorf("x: %w", io.EOF), syscall.ETIMEDOUT},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), syscall.ETIMEDOUT},
		{fmt.Errorf("x: %w", syscall.ENOTCONN), syscall.ETIMEDOUT},
		{fmt.Errorf("x: %w", context.Canceled), syscall.EIO},
	} {
		if got := doneStatus(tc.err); got != tc.want {
			t.Errorf("doneStatus(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// doneKernel records DONE; Accept hands out what accepts holds, then
// ErrNoRequest.
type doneKernel struct {
	mu      sync.Mutex
	accepts []acceptReply
	dones   []genl.Done
	doneErr error
}

type acceptReply struct {
	req genl.Request
	err error
}

func (k *doneKernel) Accept() (genl.Request, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.accepts) == 0 {
		return genl.Request{FD: -1}, fmt.Errorf("test: %w", genl.ErrNoRequest)
	}
	a := k.accepts[0]
	k.accepts = k.accepts[1:]
	return a.req, a.err
}

func (k *doneKernel) Done(d genl.Done) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dones = append(k.dones, d)
	return k.doneErr
}

func (k *doneKernel) done() []genl.Done {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.dones)
}

// tcpFD is a consumer's socket fd for a request; finish closes it.
func tcpFD(t *testing.T) int32 {
	t.Helper()
	c, _ := testtool.TCPPair(t)
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return int32(fd)
}

// TestNoRemoteAuthOnFailure: a DONE that reports a failure names no peer
// credentials, even when the handshake got as far as learning them; a
// success names them.
func TestNoRemoteAuthOnFailure(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want []int32
	}{
		{errors.New("installing failed"), nil},
		{nil, []int32{7}},
	} {
		k := &doneKernel{}
		logs := &testtool.Buffer{}
		d := &Daemon{Kernel: k, Log: slog.New(slog.NewTextHandler(logs, nil))}
		r := &request{Request: genl.Request{FD: tcpFD(t), MessageType: genl.ServerHello, Auth: genl.PSK}, accepted: time.Now(),
			kind: kind{role: config.Server}}
		d.finish(r, result{identity: "id", remoteAuth: []int32{7}}, tc.err)
		dones := k.done()
		if len(dones) != 1 || !slices.Equal(dones[0].RemoteAuth, tc.want) {
			t.Errorf("err %v: DONE %+v, want REMOTE_AUTH %v", tc.err, dones, tc.want)
		}
	}
}

// TestFinishLogsDoneError: a DONE the kernel refused is logged as an
// error, with the reason.
func TestFinishLogsDoneError(t *testing.T) {
	k := &doneKernel{doneErr: errors.New("ENOENT from DONE")}
	logs := &testtool.Buffer{}
	d := &Daemon{Kernel: k, Log: slog.New(slog.NewTextHandler(logs, nil))}
	d.finish(&request{Request: genl.Request{FD: tcpFD(t), PeerName: "nfs.example"}, accepted: time.Now()}, result{}, nil)
	if s := logs.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "ENOENT from DONE") ||
		!strings.Contains(s, "peer=nfs.example") || !strings.Contains(s, "role=unknown") {
		t.Errorf("log: %s", s)
	}
}

const identityRules = `
[[peer]]
name = "blocked"
reject = true
[peer.match]
psk_identity = "NVMe0R01 blocked *"

[[peer]]
name = "x509 only"
auth = ["x509"]
[peer.match]
psk_identity = "NVMe0R01 certs *"

[[peer]]
name = "narrow"
cipher_suites = ["TLS_CHACHA20_POLY1305_SHA256"]
groups = ["secp384r1"]
psk_modes = ["psk_ke"]
[peer.match]
psk_identity = "NVMe0R01 narrow *"
`

// TestPSKLookupPerIdentity: a server applies the rule of the identity the
// client offers: a rule that rejects it, or allows no PSK, answers as if
// the key were unknown; a rule that narrows suites, groups and modes
// narrows them for that key.
func TestPSKLookupPerIdentity(t *testing.T) {
	policy := mustPolicy(t, identityRules)
	keys := newMemKeyring()
	for i, id := range []string{"NVMe0R01 blocked h", "NVMe0R01 certs h", "NVMe0R01 narrow h", "NVMe0R01 other h"} {
		keys.add(int32(10+i), id, key32(byte(i+1)))
	}
	base := policy.Resolve(config.Match{Role: config.Server})
	l := &pskLookup{keys: keys, rings: []int32{nvmeRing}, policy: policy, settings: base, match: config.Match{Role: config.Server}}
	defer l.zero()

	for _, id := range []string{"NVMe0R01 blocked h", "NVMe0R01 certs h", "NVMe0R01 nobody h"} {
		if psk, err := l.get([]byte(id)); !errors.Is(err, tls13.ErrUnknownPSK) || psk != nil {
			t.Errorf("%s: %v, %v; want ErrUnknownPSK", id, psk, err)
		}
	}
	if _, _, ok := l.found(); ok {
		t.Error("a refused identity was recorded as found")
	}

	psk, err := l.get([]byte("NVMe0R01 narrow h"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(psk.CipherSuites, []tls13.CipherSuite{tls13.TLS_CHACHA20_POLY1305_SHA256}) ||
		!slices.Equal(psk.Groups, []tls13.Group{tls13.P384}) ||
		!slices.Equal(psk.PSKModes, []tls13.PSKMode{tls13.PSKModeKE}) {
		t.Errorf("narrow: suites %v groups %v modes %v", psk.CipherSuites, psk.Groups, psk.PSKModes)
	}
	if psk.Tag != int32(12) || psk.Hash != crypto.SHA256 || string(psk.Key) != string(key32(3)) {
		t.Errorf("narrow: tag %v hash %v", psk.Tag, psk.Hash)
	}
	if id, rule, ok := l.found(); !ok || id != "NVMe0R01 narrow h" || rule != "narrow" {
		t.Errorf("found %q %q %v", id, rule, ok)
	}

	psk, err = l.get([]byte("NVMe0R01 other h"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(psk.CipherSuites, base.CipherSuites) || !slices.Equal(psk.Groups, base.Groups) ||
		!slices.Equal(psk.PSKModes, base.PSKModes) {
		t.Errorf("other: %v %v %v, want the defaults", psk.CipherSuites, psk.Groups, psk.PSKModes)
	}
	if _, rule, _ := l.found(); rule != "" {
		t.Errorf("other: rule %q, want the defaults'", rule)
	}
	l.zero()
	if string(psk.Key) == string(key32(4)) {
		t.Error("zero left a key read during the handshake")
	}
}

// TestPSKLookupWithoutIdentityRules: a policy with no rule testing an
// identity is not resolved again; the settings from before the handshake
// stand, a rejecting one included.
func TestPSKLookupWithoutIdentityRules(t *testing.T) {
	policy := mustPolicy(t, "[server]\ncipher_suites = [\"TLS_CHACHA20_POLY1305_SHA256\"]\n")
	keys := newMemKeyring()
	keys.add(1, nvmeID, key32(1))
	base := policy.Resolve(config.Match{Role: config.Server})
	l := &pskLookup{keys: keys, rings: []int32{nvmeRing}, policy: policy, settings: base}
	psk, err := l.get([]byte(nvmeID))
	if err != nil || !slices.Equal(psk.CipherSuites, []tls13.CipherSuite{tls13.TLS_CHACHA20_POLY1305_SHA256}) {
		t.Fatalf("%v %v", psk, err)
	}
	l.settings = &config.Settings{Reject: true, Auth: config.AllAuthModes, Rule: "r"}
	if _, err := l.get([]byte(nvmeID)); !errors.Is(err, tls13.ErrUnknownPSK) {
		t.Errorf("rejecting settings: %v", err)
	}
	keys.fail = errors.New("keyctl broke")
	if _, err := l.get([]byte(nvmeID)); err == nil || errors.Is(err, tls13.ErrUnknownPSK) {
		t.Errorf("keyring error: %v, want it passed on", err)
	}
}

// TestPerIdentityRulesThroughDaemon: the narrowed suite is the one the
// handshake settles on, and the log names the identity's rule.
func TestPerIdentityRulesThroughDaemon(t *testing.T) {
	const id = "NVMe0R01 narrow h"
	for _, tc := range []struct {
		id, rule string
		want     syscall.Errno
	}{
		{id, "narrow", 0},
		{"NVMe0R01 blocked h", "", syscall.EKEYREJECTED},
	} {
		td := newTestDaemon(t, identityRules)
		td.keys.add(1, tc.id, key32(1))
		consumer, peer := socketPair(t)
		td.start()
		p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
		go func() {
			cli := tls13.Client(peer, &tls13.Config{PSKModes: []tls13.PSKMode{tls13.PSKModeKE, tls13.PSKModeDHE},
				PSKs: []tls13.PSK{{Identity: []byte(tc.id), Key: key32(1), Hash: crypto.SHA256}}})
			cli.Handshake(context.Background())
		}()
		r := wait(t, p)
		td.stop(t)
		if r.Status != tc.want {
			t.Errorf("%s: status %v, want %v\n%s", tc.id, r.Status, tc.want, td.logs)
		}
		if tc.want != 0 {
			continue
		}
		if s := td.logs.String(); !strings.Contains(s, "rule=narrow") || !strings.Contains(s, "suite=TLS_CHACHA20_POLY1305_SHA256") ||
			!strings.Contains(s, "psk_mode=psk_ke") {
			t.Errorf("log does not show the narrowed handshake:\n%s", s)
		}
	}
}

// panicInstaller panics instead of installing.
type panicInstaller struct{}

func (panicInstaller) Install(int, ktls.Keys, ktls.Keys, ktls.Options) error {
	panic("installer exploded")
}

// TestPanicGetsDone: a handshake that panics, on its own goroutine or on
// the key thread, still gets its DONE (EIO), one Event and a logged stack,
// and the daemon goes on serving.
func TestPanicGetsDone(t *testing.T) {
	t.Run("installer", func(t *testing.T) {
		td := newTestDaemon(t, "")
		td.Installer = panicInstaller{}
		var events []Event
		var mu sync.Mutex
		td.Events = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
		td.keys.add(1, nvmeID, key32(1))
		consumer, peer := socketPair(t)
		td.start()
		p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
		go peerClient(nvmeID, key32(1))(t, peer)
		if r := wait(t, p); r.Status != syscall.EIO {
			t.Errorf("status %v, want EIO", r.Status)
		}
		td.stop(t)
		s := td.logs.String()
		if !strings.Contains(s, "installer exploded") || !strings.Contains(s, "goroutine ") || !strings.Contains(s, "result=failed") {
			t.Errorf("no panic with a stack in the log:\n%s", s)
		}
		if len(events) != 1 || events[0].Status != syscall.EIO {
			t.Errorf("events %+v", events)
		}
	})
	t.Run("key thread", func(t *testing.T) {
		td := newTestDaemon(t, "")
		td.keys.add(1, nvmeID, key32(1))
		td.keys.panicOn = 1
		c1, _ := socketPair(t)
		host, tgt := consumerPair(t)
		td.start()
		if r := wait(t, td.fk.Submit(int(c1.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{1}})); r.Status != syscall.EIO {
			t.Errorf("status %v, want EIO\n%s", r.Status, td.logs)
		}
		// The key thread survived: a pair of requests still works.
		td.keys.mu.Lock()
		td.keys.panicOn = 0
		td.keys.mu.Unlock()
		ph := td.fk.Submit(int(host.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{1}})
		pt := td.fk.Submit(int(tgt.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
		if rh, rt := wait(t, ph), wait(t, pt); rh.Status != 0 || rt.Status != 0 {
			t.Errorf("after the panic: host %v target %v\n%s", rh.Status, rt.Status, td.logs)
		}
		if !strings.Contains(td.logs.String(), "on a locked thread: key 1 exploded") {
			t.Errorf("log:\n%s", td.logs)
		}
	})
}

// blockingKeyring holds every Attach until release is closed.
type blockingKeyring struct {
	*memKeyring
	entered chan struct{}
	release chan struct{}
	shared  int32
	attachd []config.Keyring
	mu      sync.Mutex
}

func (k *blockingKeyring) Attach(rings []config.Keyring, request int32) ([]int32, func(), error) {
	k.mu.Lock()
	k.attachd = append(k.attachd, rings...)
	k.mu.Unlock()
	if len(rings) == 1 && rings[0].Serial == k.shared && k.shared != 0 {
		return nil, nil, errors.New("cannot link the shared keyring")
	}
	select {
	case k.entered <- struct{}{}:
	default:
	}
	<-k.release
	return k.memKeyring.Attach(rings, request)
}

func (k *blockingKeyring) Share() (int32, error) {
	if k.shared == 0 {
		return 0, errors.New("no process keyring")
	}
	return k.shared, nil
}

// TestDaemonEdges runs the daemon against a scripted kernel: a failing
// ACCEPT, a reply that did not decode, a READY socket that errs, sharing
// that fails, and a shutdown with requests still queued: every request
// taken gets exactly one DONE.
func TestDaemonEdges(t *testing.T) {
	for _, shared := range []int32{0, 77} {
		k := &doneKernel{}
		const n = 1 + 1 + 4 + 1 + 1 // in flight, held for a slot, queued, blocked on the queue, decode error
		var fds []int32
		for i := 0; i < n-1; i++ {
			fds = append(fds, tcpFD(t))
			k.accepts = append(k.accepts, acceptReply{req: genl.Request{FD: fds[i], MessageType: genl.ServerHello, Auth: genl.PSK}})
		}
		// A failing ACCEPT comes first (the daemon waits for READY again,
		// and READY fails too), then a reply whose attributes did not
		// decode, which waits for no slot.
		k.accepts = append([]acceptReply{
			{req: genl.Request{FD: -1}, err: errors.New("EPERM from ACCEPT")},
			{req: genl.Request{FD: tcpFD(t)}, err: errors.New("bad attribute")},
		}, k.accepts...)

		keys := &blockingKeyring{memKeyring: newMemKeyring(), entered: make(chan struct{}, 1), release: make(chan struct{}), shared: shared}
		logs := &testtool.Buffer{}
		ready := make(chan error, 1)
		ready <- errors.New("recvmsg: ENOBUFS")
		holder := config.NewHolder(mustPolicy(t, "[global]\nmax_concurrent = 1\n"))
		d := &Daemon{Kernel: k, Ready: errReady(ready), Keyring: keys, Installer: &recordingInstaller{},
			Policy: holder.Load, Log: slog.New(slog.NewTextHandler(logs, nil)), PeerSlots: 1}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		<-keys.entered
		// One in flight, one waiting for a slot, four queued, one blocked
		// on the full queue.
		deadline := time.Now().Add(10 * time.Second)
		for d.Stats().Queued < 6 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if s := d.Stats(); s.Queued != 6 || s.InFlight != 1 {
			t.Fatalf("stats %+v before shutdown\n%s", s, logs)
		}
		cancel()
		for d.Stats().Queued > 5 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(keys.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		dones := k.done()
		if len(dones) != n {
			t.Errorf("%d DONEs for %d requests", len(dones), n)
		}
		seen := map[int32]int{}
		for _, dn := range dones {
			seen[dn.FD]++
		}
		for fd, c := range seen {
			if c != 1 {
				t.Errorf("fd %d got %d DONEs", fd, c)
			}
		}
		s := logs.String()
		for _, want := range []string{"decoding ACCEPT reply", "shutting down", "ACCEPT failed", "EPERM from ACCEPT", "waiting for READY"} {
			if !strings.Contains(s, want) {
				t.Errorf("shared=%d: log lacks %q:\n%s", shared, want, s)
			}
		}
		if shared == 0 && !strings.Contains(s, "sharing the accept thread's keyring") {
			t.Errorf("no warning about sharing:\n%s", s)
		}
		if shared != 0 && !strings.Contains(s, "linking the accept thread's keyring") {
			t.Errorf("no warning about linking the shared keyring:\n%s", s)
		}
		if st := d.Stats(); st.Queued != 0 || st.InFlight != 0 || st.Served+st.Failed != n {
			t.Errorf("stats after Run: %+v", st)
		}
	}
}

// errReady returns what c holds, then waits for the context.
type errReady chan error

func (r errReady) Wait(ctx context.Context) error {
	select {
	case err := <-r:
		return err
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestRunNeedsItsParts(t *testing.T) {
	if err := (&Daemon{}).Run(context.Background()); err == nil {
		t.Error("Run without a kernel succeeded")
	}
}

// TestValidate refuses sockets that are not TCP and fds that are no
// sockets at all.
func TestValidate(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notasocket")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &request{Request: genl.Request{FD: int32(f.Fd()), Auth: genl.PSK}}
	if err := r.validate(); err == nil || doneStatus(err) != syscall.EIO {
		t.Errorf("a file: %v", err)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	r = &request{Request: genl.Request{FD: int32(fds[0]), Auth: genl.X509}}
	if err := r.validate(); doneStatus(err) != syscall.EOPNOTSUPP {
		t.Errorf("a unix socket: %v", err)
	}
	if r.peer.IsValid() {
		t.Errorf("peer %v for a refused socket", r.peer)
	}
}

func TestStatusName(t *testing.T) {
	for e, want := range map[syscall.Errno]string{0: "0", syscall.EACCES: "EACCES", 4000: "4000"} {
		if got := statusName(e); got != want {
			t.Errorf("statusName(%d) = %q, want %q", e, got, want)
		}
	}
}

func TestPeerString(t *testing.T) {
	r := &request{}
	if got := peerString(r); got != "unknown" {
		t.Errorf("%q", got)
	}
}

func TestPSKHash(t *testing.T) {
	if h := pskHash("NVMe0R02 h s", key32(1)); h != crypto.SHA384 {
		t.Errorf("NVMe hh 02: %v", h)
	}
	if h := pskHash("plain", make([]byte, 48)); h != crypto.SHA384 {
		t.Errorf("48-byte key: %v", h)
	}
	if h := pskHash("plain", key32(1)); h != crypto.SHA256 {
		t.Errorf("32-byte key: %v", h)
	}
}
