package tls13

// A hostile-peer harness: a scripted TLS 1.3 peer with a known PSK and
// fixed randomness speaks correct TLS 1.3 to the engine and tampers with
// one thing at a time. Each case names the exact alert the engine must
// send (or report as received), and the DONE status its error maps to.
// The peer reuses the engine's primitives (key schedule, message codecs,
// record sealing), which RFC 8448's vectors check independently, but none
// of the handshake logic under test.

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// fixedRand is the peer's and the engine's randomness: the same bytes on
// every run, so a failing case replays exactly.
func fixedRand(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

// doneStatusOf mirrors handshake.doneStatus (handshake/status.go) for the
// errors this package returns, so that each hostile case also states the
// status the kernel consumer would see. handshake imports tls13, so the
// mapping cannot be called from here; keep the two in step.
func doneStatusOf(err error) syscall.Errno {
	var ae *AlertError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ae) && ae.Alert == AlertUnknownPSKIdentity:
		return syscall.EKEYREJECTED
	case errors.As(err, &ae) && !ae.Received && ae.Alert == AlertInternalError:
		return syscall.EIO
	case errors.As(err, &ae):
		return syscall.EACCES
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return syscall.ETIMEDOUT
	}
	return syscall.EIO
}

// peer is the scripted side: one end of a TCP connection, its own record
// protection, and the handshake bytes it has read but not consumed.
type peer struct {
	t       *testing.T
	conn    *net.UnixConn
	in, out halfConn
	hand    []byte
	rand    io.Reader
	closed  bool
	ccs     int // change_cipher_spec records the engine sent
}

func (p *peer) send(typ uint8, data []byte) { p.sendPadded(typ, data, 0) }

// sendPadded seals data as one record with padding zero bytes, ignoring
// write errors: the engine may already have given up.
func (p *peer) sendPadded(typ uint8, data []byte, padding int) {
	rec, err := p.out.seal(nil, typ, data, padding)
	if err != nil {
		p.t.Fatal(err)
	}
	p.conn.Write(rec)
}

func (p *peer) raw(b []byte) { p.conn.Write(b) }

// record reads one record, decrypting it when it is protected and p.in
// has keys.
func (p *peer) record() (uint8, []byte, error) {
	var hdr [recordHeaderLen]byte
	if _, err := io.ReadFull(p.conn, hdr[:]); err != nil {
		return 0, nil, err
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(p.conn, body); err != nil {
		return 0, nil, err
	}
	if hdr[0] == recordTypeApplicationData && p.in.keyed() {
		return p.in.open(hdr[:], body)
	}
	return hdr[0], body, nil
}

// engineAlert is what the engine sent in place of a message: an alert
// (ok) or nothing before EOF.
type engineAlert struct {
	alert Alert
	ok    bool
}

func (a engineAlert) String() string {
	if !a.ok {
		return "no alert"
	}
	return a.alert.String()
}

// next returns the engine's next handshake message, or the alert it sent
// instead (msg nil).
func (p *peer) next() ([]byte, engineAlert) {
	for len(p.hand) < 4 || len(p.hand) < 4+msgLen(p.hand) {
		typ, data, err := p.record()
		if err != nil {
			return nil, engineAlert{}
		}
		switch typ {
		case recordTypeChangeCipherSpec:
			p.ccs++
		case recordTypeHandshake:
			p.hand = append(p.hand, data...)
		case recordTypeAlert:
			return nil, p.alert(data)
		default:
			p.t.Fatalf("engine sent record type %d during the handshake", typ)
		}
	}
	n := 4 + msgLen(p.hand)
	msg := p.hand[:n:n]
	p.hand = p.hand[n:]
	return msg, engineAlert{}
}

// hangUp half-closes the connection: the engine reads EOF after what
// was sent.
func (p *peer) hangUp() {
	if !p.closed {
		p.conn.CloseWrite()
		p.closed = true
	}
}

// finish half-closes the connection, so that an engine still waiting
// for the peer fails at once, and returns the alert the engine sends, if
// any, skipping whatever else it sends first.
func (p *peer) finish() engineAlert {
	p.hangUp()
	for {
		typ, data, err := p.record()
		if err != nil {
			return engineAlert{}
		}
		if typ == recordTypeAlert {
			return p.alert(data)
		}
	}
}

// alert checks an alert record the engine sent: two bytes, level
// warning (1) for close_notify and user_canceled and fatal (2) for every
// other (RFC 8446, 6).
func (p *peer) alert(data []byte) engineAlert {
	if len(data) != 2 {
		p.t.Fatalf("engine sent an alert record of %d bytes", len(data))
	}
	a := Alert(data[1])
	level := byte(2)
	if a == AlertCloseNotify || a == AlertUserCanceled {
		level = 1
	}
	if data[0] != level {
		p.t.Errorf("engine sent %v at level %d, want %d", a, data[0], level)
	}
	return engineAlert{a, true}
}

// socketPair is a connected pair of stream sockets. The hostile cases
// need no TCP (the no-over-read property has tests of its own), and a
// socketpair is much cheaper to set up per fuzz input than a loopback
// connection; half-close and deadlines work the same.
func socketPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b = conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// hostileRun runs the engine (made by newEngine on its end of a TCP
// pair) against script, and returns the engine's error and the alert the
// peer saw. post, if set, runs on the engine after a successful handshake
// (to make it read post-handshake records) and its error is returned.
type hostileRun struct {
	newEngine func(net.Conn) *Conn
	post      func(*Conn) error
	script    func(*peer) engineAlert
}

func (h hostileRun) run(t *testing.T) (error, engineAlert) {
	t.Helper()
	ec, pc := socketPair(t)
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("engine panicked: %v\n%s", r, debug.Stack())
			}
			ec.CloseWrite()
			errc <- err
		}()
		c := h.newEngine(ec)
		if err = c.Handshake(ctx); err == nil && h.post != nil {
			ec.SetDeadline(time.Now().Add(10 * time.Second))
			err = h.post(c)
		}
	}()
	p := &peer{t: t, conn: pc, rand: fixedRand(2)}
	alert := h.script(p)
	pc.CloseWrite() // whatever happened, the engine stops waiting for us
	err := <-errc
	if err != nil && bytes.Contains([]byte(err.Error()), []byte("engine panicked")) {
		t.Fatal(err)
	}
	return err, alert
}

// wantOutcome checks the engine's error (the alert, and whether it was
// the engine's or the peer's), the status it maps to, and the alert the
// peer received.
func wantOutcome(t *testing.T, err error, peerSaw engineAlert, alert Alert, received bool, status syscall.Errno) {
	t.Helper()
	t.Logf("engine: %v", err)
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != alert || ae.Received != received {
		t.Errorf("engine error %v, want alert %v (received %v)", err, alert, received)
	}
	if got := doneStatusOf(err); got != status {
		t.Errorf("status %v, want %v", got, status)
	}
	if !received && (!peerSaw.ok || peerSaw.alert != alert) {
		t.Errorf("peer received %v, want %v", peerSaw, alert)
	}
}

// readAll is a post step: read application data until an error.
func readAll(c *Conn) error {
	buf := make([]byte, 1024)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}

// ---- The hostile client, against the engine's server ----

var hostilePSK = testPSK("NVMe0R01 nqn.hostile-host nqn.hostile-subsys", crypto.SHA256)

// clientScript describes one hostile client. Hooks left nil do the
// right thing.
type clientScript struct {
	psks   []PSK   // offered in order; nil means hostilePSK
	groups []Group // supported_groups, a key share for the first; nil: X25519
	modes  []uint8 // psk_key_exchange_modes; nil: psk_dhe_ke
	// hello edits the first ClientHello before its binders are computed;
	// signed edits its bytes after; records, if set, sends them instead.
	hello    func(*clientHello)
	unsigned func([]byte) []byte // edits the bytes before binders are computed
	signed   func([]byte) []byte
	records  func(p *peer, ch []byte)
	// hello2 edits the second ClientHello (after a HelloRetryRequest).
	hello2    func(*clientHello)
	unsigned2 func([]byte) []byte
	signed2   func(raw, prefix []byte) []byte // prefix: what the binders cover before raw
	// beforeFinished runs after the server flight, before our Finished
	// (under the client handshake keys); finished edits our Finished.
	beforeFinished func(p *peer)
	finished       func([]byte) []byte
	// after runs once the handshake is done, under application keys.
	after func(p *peer)
}

// helloFor builds a ClientHello offering psks with binders of the right
// sizes (not yet computed) and key shares for the first group.
func (p *peer) helloFor(psks []PSK, groups []Group, modes []uint8, keys map[Group]clientKey) *clientHello {
	ch := &clientHello{
		random:              make([]byte, 32),
		cipherSuites:        slices.Clone(DefaultCipherSuites),
		supportedVersions:   []uint16{VersionTLS13},
		supportedGroups:     groups,
		pskModes:            modes,
		signatureAlgorithms: defaultSignatureAlgorithms,
	}
	io.ReadFull(p.rand, ch.random)
	if len(groups) > 0 {
		key, share, err := newClientKey(groups[0], p.rand)
		if err != nil {
			p.t.Fatal(err)
		}
		keys[groups[0]] = key
		ch.keyShares = []keyShare{{groups[0], share}}
	}
	for _, psk := range psks {
		ch.pskIdentities = append(ch.pskIdentities, pskIdentity{identity: psk.Identity})
		ch.pskBinders = append(ch.pskBinders, make([]byte, psk.Hash.Size()))
	}
	return ch
}

// sign marshals ch and computes the binder of every identity that is one
// of psks (prefix: what precedes the ClientHello in the transcript).
func sign(ch *clientHello, psks []PSK, prefix func(crypto.Hash) []byte, edit func([]byte) []byte) []byte {
	ch.marshal()
	if edit != nil {
		ch.raw = edit(ch.raw) // binders stay at the end, where updateBinders writes
	}
	if len(ch.pskBinders) != len(ch.pskIdentities) {
		return ch.raw // a hostile count: nothing to sign
	}
	var binders [][]byte
	for i, id := range ch.pskIdentities {
		b := slices.Clone(ch.pskBinders[i])
		for _, psk := range psks {
			if bytes.Equal(psk.Identity, id.identity) && psk.Hash.Size() == len(b) {
				h := psk.Hash.New()
				if prefix != nil {
					h.Write(prefix(psk.Hash))
				}
				h.Write(ch.truncated())
				b = finishedMAC(psk.Hash, newEarlySecret(psk.Hash, psk.Key).binderKey(), h.Sum(nil))
			}
		}
		binders = append(binders, b)
	}
	if len(binders) == len(ch.pskBinders) {
		ch.updateBinders(binders)
	}
	return ch.raw
}

func (s clientScript) run(p *peer) engineAlert {
	psks := s.psks
	if psks == nil {
		psks = []PSK{hostilePSK}
	}
	groups := s.groups
	if groups == nil {
		groups = []Group{X25519}
	}
	modes := s.modes
	if modes == nil {
		modes = []uint8{uint8(PSKModeDHE)}
	}
	keys := map[Group]clientKey{}
	ch := p.helloFor(psks, groups, modes, keys)
	if s.hello != nil {
		s.hello(ch)
	}
	raw := sign(ch, psks, nil, s.unsigned)
	if s.signed != nil {
		raw = s.signed(slices.Clone(raw))
	}
	if s.records != nil {
		s.records(p, raw)
	} else {
		p.send(recordTypeHandshake, raw)
	}
	ch1 := raw

	msg, a := p.next()
	if msg == nil {
		return a
	}
	var sh serverHello
	if err := sh.unmarshal(msg); err != nil {
		p.t.Fatalf("engine sent a bad ServerHello: %v", err)
	}
	var prefix []byte // message_hash(CH1) || HRR, after a retry
	if sh.isHRR() {
		hh := sh.cipherSuite.Hash()
		d := hh.New()
		d.Write(ch1)
		prefix = append(messageHash(d.Sum(nil)), msg...)
		ch2 := *ch
		key, share, err := newClientKey(sh.selectedGroup, p.rand)
		if err != nil {
			p.t.Fatal(err)
		}
		keys[sh.selectedGroup] = key
		ch2.keyShares = []keyShare{{sh.selectedGroup, share}}
		ch2.cookie = sh.cookie
		if s.hello2 != nil {
			s.hello2(&ch2)
		}
		raw = sign(&ch2, psks, func(crypto.Hash) []byte { return prefix }, s.unsigned2)
		if s.signed2 != nil {
			raw = s.signed2(slices.Clone(raw), prefix)
		}
		p.send(recordTypeHandshake, raw)
		ch = &ch2
		if s.signed2 != nil {
			var parsed clientHello // what was really sent, if it parses
			if parsed.unmarshal(raw) == nil {
				ch = &parsed
			}
		}
		if msg, a = p.next(); msg == nil {
			return a
		}
		if err := sh.unmarshal(msg); err != nil {
			p.t.Fatalf("engine sent a bad ServerHello: %v", err)
		}
	}

	suite := sh.cipherSuite
	// The PSK the engine chose, by identity: after a hostile edit the
	// identities sent may differ from psks.
	if int(sh.selectedIdentity) >= len(ch.pskIdentities) {
		p.t.Fatalf("engine selected identity %d of %d", sh.selectedIdentity, len(ch.pskIdentities))
	}
	i := slices.IndexFunc(psks, func(q PSK) bool {
		return bytes.Equal(q.Identity, ch.pskIdentities[sh.selectedIdentity].identity)
	})
	if i < 0 {
		p.t.Fatalf("engine selected identity %d, which has no key", sh.selectedIdentity)
	}
	psk := psks[i]
	var shared []byte
	if sh.keyShare.group != 0 {
		var err error
		if shared, err = keys[sh.keyShare.group].finish(sh.keyShare.data); err != nil {
			p.t.Fatal(err)
		}
	}
	tr := suite.Hash().New()
	tr.Write(prefix)
	tr.Write(raw)
	tr.Write(msg)
	hs := newEarlySecret(psk.Hash, psk.Key).handshakeSecret(shared)
	clientHS, serverHS := hs.clientTrafficSecret(tr), hs.serverTrafficSecret(tr)
	p.in.setTrafficSecret(suite, serverHS)

	ee, a := p.next()
	if ee == nil {
		return a
	}
	tr.Write(ee)
	fin, a := p.next()
	if fin == nil {
		return a
	}
	if err := verifyFinished(fin, suite.Hash(), serverHS, tr, "server Finished"); err != nil {
		p.t.Fatalf("engine's server Finished: %v", err)
	}
	tr.Write(fin)
	ms := hs.masterSecret()
	clientApp, serverApp := ms.clientTrafficSecret(tr), ms.serverTrafficSecret(tr)
	p.in.setTrafficSecret(suite, serverApp)
	p.out.setTrafficSecret(suite, clientHS)
	if s.beforeFinished != nil {
		s.beforeFinished(p)
	}
	myFin := marshalFinished(finishedMAC(suite.Hash(), clientHS, tr.Sum(nil)))
	if s.finished != nil {
		myFin = s.finished(myFin)
	}
	if myFin != nil {
		p.send(recordTypeHandshake, myFin)
	}
	p.out.setTrafficSecret(suite, clientApp)
	if s.after != nil {
		s.after(p)
	}
	return p.finish()
}

// hostileServer runs the engine's server, knowing hostilePSK (and
// whatever extra PSKs are given), against a hostile client.
func hostileServer(t *testing.T, cfg *Config, s clientScript, post func(*Conn) error) (error, engineAlert) {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	if cfg.GetPSK == nil {
		cfg.GetPSK = keyring(hostilePSK)
	}
	cfg.Rand = fixedRand(1)
	return hostileRun{
		newEngine: func(c net.Conn) *Conn { return Server(c, cfg) },
		post:      post,
		script:    s.run,
	}.run(t)
}

// flip returns b with one bit of its last byte changed.
func flip(b []byte) []byte {
	b = slices.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

func TestHostileClientBaseline(t *testing.T) {
	// The harness itself: an honest script completes, with and without a
	// retry, and the engine then reads what the peer sends.
	err, a := hostileServer(t, nil, clientScript{}, nil)
	if err != nil || a.ok {
		t.Fatalf("honest client: engine %v, peer saw %v", err, a)
	}
	err, a = hostileServer(t, &Config{Groups: []Group{P256}}, clientScript{groups: []Group{X25519, P256}}, nil)
	if err != nil || a.ok {
		t.Fatalf("honest client after HRR: engine %v, peer saw %v", err, a)
	}
	err, a = hostileServer(t, nil, clientScript{
		after: func(p *peer) { p.send(recordTypeApplicationData, []byte("hello")) },
	}, readAll)
	if err != io.EOF {
		t.Fatalf("reading after the handshake: %v", err)
	}
}

func TestHostileClient(t *testing.T) {
	other := testPSK("NVMe0R01 nqn.other nqn.hostile-subsys", crypto.SHA256)
	binderCase := func(binders ...[]byte) func(*clientHello) {
		return func(ch *clientHello) { ch.pskBinders = binders }
	}
	cases := []struct {
		name     string
		cfg      *Config
		script   clientScript
		alert    Alert
		received bool
		status   syscall.Errno
	}{
		{name: "client Finished wrong", script: clientScript{finished: flip},
			alert: AlertDecryptError, status: syscall.EACCES},
		{name: "client Finished short", script: clientScript{finished: func(b []byte) []byte {
			b = b[:len(b)-1]
			b[3]--
			return b
		}}, alert: AlertDecodeError, status: syscall.EACCES},
		{name: "client Finished missing", script: clientScript{finished: func([]byte) []byte {
			return marshalKeyUpdate(0)
		}}, alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "binder wrong", script: clientScript{signed: flip},
			alert: AlertDecryptError, status: syscall.EACCES},
		{name: "binder of the other hash's length", script: clientScript{
			hello: binderCase(make([]byte, 48))}, alert: AlertDecryptError, status: syscall.EACCES},
		{name: "binder of 31 bytes", script: clientScript{hello: binderCase(make([]byte, 31))},
			alert: AlertDecodeError, status: syscall.EACCES},
		{name: "binder empty", script: clientScript{hello: binderCase([]byte{})},
			alert: AlertDecodeError, status: syscall.EACCES},
		{name: "fewer binders than identities", script: clientScript{
			psks:  []PSK{other, hostilePSK},
			hello: binderCase(make([]byte, 32))}, alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "more binders than identities", script: clientScript{
			hello: binderCase(make([]byte, 32), make([]byte, 32))}, alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "no psk_key_exchange_modes", script: clientScript{modes: []uint8{}},
			alert: AlertMissingExtension, status: syscall.EACCES},
		{name: "only an unknown PSK mode", script: clientScript{modes: []uint8{7}},
			alert: AlertHandshakeFailure, status: syscall.EACCES},
		{name: "psk_ke to a server that wants psk_dhe_ke", cfg: &Config{PSKModes: []PSKMode{PSKModeDHE}},
			script: clientScript{modes: []uint8{uint8(PSKModeKE)}, groups: []Group{}},
			alert:  AlertHandshakeFailure, status: syscall.EACCES},
		{name: "key share without supported_groups", script: clientScript{hello: func(ch *clientHello) { ch.supportedGroups = nil }},
			alert: AlertMissingExtension, status: syscall.EACCES},
		{name: "key share for an unlisted group", script: clientScript{hello: func(ch *clientHello) { ch.supportedGroups = []Group{P256} }},
			alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "unknown identity", script: clientScript{psks: []PSK{other}},
			alert: AlertUnknownPSKIdentity, status: syscall.EKEYREJECTED},
		{name: "no TLS 1.3", script: clientScript{hello: func(ch *clientHello) { ch.supportedVersions = []uint16{0x0303} }},
			alert: AlertProtocolVersion, status: syscall.EACCES},
		{name: "pre_shared_key not last", script: clientScript{signed: func(b []byte) []byte {
			return appendExtension(b, 0xfafa, nil)
		}}, alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "CCS before the ClientHello", script: clientScript{records: func(p *peer, ch []byte) {
			p.send(recordTypeChangeCipherSpec, []byte{1})
			p.send(recordTypeHandshake, ch)
		}}, alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "CCS inside a fragmented ClientHello", script: clientScript{records: func(p *peer, ch []byte) {
			p.send(recordTypeHandshake, ch[:20])
			p.send(recordTypeChangeCipherSpec, []byte{1})
			p.send(recordTypeHandshake, ch[20:])
		}}, alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "alert inside a fragmented ClientHello", script: clientScript{records: func(p *peer, ch []byte) {
			p.send(recordTypeHandshake, ch[:20])
			p.send(recordTypeAlert, []byte{2, byte(AlertInternalError)})
		}}, alert: AlertInternalError, received: true, status: syscall.EACCES},
		{name: "alert of three bytes", script: clientScript{records: func(p *peer, ch []byte) {
			p.send(recordTypeAlert, []byte{2, 40, 0})
		}}, alert: AlertDecodeError, status: syscall.EACCES},
		{name: "plaintext record too long", script: clientScript{records: func(p *peer, ch []byte) {
			p.raw(append([]byte{22, 3, 3, 0x40, 0x01}, make([]byte, 1<<14+1)...))
		}}, alert: AlertRecordOverflow, status: syscall.EACCES},
		{name: "application data before the ClientHello", script: clientScript{records: func(p *peer, ch []byte) {
			p.send(recordTypeApplicationData, []byte("early"))
		}}, alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "plaintext alert in place of Finished", script: clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) { p.raw(record(recordTypeAlert, []byte{2, byte(AlertDecryptError)})) }},
			alert: AlertDecryptError, received: true, status: syscall.EACCES},
		{name: "protected alert in place of Finished", script: clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) { p.send(recordTypeAlert, []byte{2, byte(AlertUnknownPSKIdentity)}) }},
			alert: AlertUnknownPSKIdentity, received: true, status: syscall.EKEYREJECTED},
		{name: "CCS under keys inside Finished", script: clientScript{finished: func(b []byte) []byte { return nil },
			beforeFinished: func(p *peer) { p.send(recordTypeChangeCipherSpec, []byte{1}) }},
			alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "application data before Finished", script: clientScript{
			beforeFinished: func(p *peer) { p.send(recordTypeApplicationData, []byte("too soon")) }},
			alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "protected record with a wrong tag", script: clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) {
				rec, _ := p.out.seal(nil, recordTypeHandshake, []byte{20, 0, 0, 0}, 0)
				p.raw(flip(rec))
			}}, alert: AlertBadRecordMAC, status: syscall.EACCES},
		{name: "protected record without content type", script: clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) {
				rec, _ := p.out.seal(nil, 0, nil, 10)
				p.raw(rec)
			}}, alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "inner plaintext over 2^14+1", script: clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) { p.send(recordTypeApplicationData, make([]byte, 1<<14+1)) }},
			alert: AlertRecordOverflow, status: syscall.EACCES},
		{name: "padding past 2^14+1", script: clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) { p.sendPadded(recordTypeApplicationData, make([]byte, 1<<14), 1) }},
			alert: AlertRecordOverflow, status: syscall.EACCES},
		{name: "ciphertext over 2^14+256", script: clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) { p.raw(append([]byte{23, 3, 3, 0x41, 0x01}, make([]byte, 1<<14+257)...)) }},
			alert: AlertRecordOverflow, status: syscall.EACCES},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err, a := hostileServer(t, tc.cfg, tc.script, nil)
			wantOutcome(t, err, a, tc.alert, tc.received, tc.status)
		})
	}
}

// TestHostileSecondClientHello changes, one at a time, each field RFC
// 8446, 4.1.2 requires unchanged in the ClientHello that answers a
// HelloRetryRequest.
func TestHostileSecondClientHello(t *testing.T) {
	other := testPSK("NVMe0R01 nqn.other nqn.hostile-subsys", crypto.SHA256)
	cases := []struct {
		name   string
		hello2 func(*clientHello)
		psks   []PSK
	}{
		{"random", func(ch *clientHello) { ch.random = bytes.Repeat([]byte{9}, 32) }, nil},
		{"legacy_session_id", func(ch *clientHello) { ch.sessionID = []byte("other") }, nil},
		{"cipher_suites", func(ch *clientHello) { ch.cipherSuites = ch.cipherSuites[:2] }, nil},
		{"supported_versions", func(ch *clientHello) { ch.supportedVersions = []uint16{VersionTLS13, 0x0303} }, nil},
		{"supported_groups", func(ch *clientHello) { ch.supportedGroups = append(ch.supportedGroups, P384) }, nil},
		{"psk_key_exchange_modes", func(ch *clientHello) { ch.pskModes = []uint8{1, 0} }, nil},
		{"server_name", func(ch *clientHello) { ch.serverName = "elsewhere" }, nil},
		{"signature_algorithms", func(ch *clientHello) { ch.signatureAlgorithms = ch.signatureAlgorithms[:1] }, nil},
		{"record_size_limit added", func(ch *clientHello) { ch.recordSizeLimit = 1024 }, nil},
		{"early_data", func(ch *clientHello) { ch.earlyData = true }, nil},
		{"cookie not sent", func(ch *clientHello) { ch.cookie = []byte("cookie") }, nil},
		{"two key shares", func(ch *clientHello) {
			ch.keyShares = append(ch.keyShares, keyShare{X25519, make([]byte, 32)})
		}, nil},
		{"key share for another group", func(ch *clientHello) {
			ch.keyShares = []keyShare{{X25519, bytes.Repeat([]byte{1}, 32)}}
		}, nil},
		{"PSK identity added", func(ch *clientHello) {
			ch.pskIdentities = append([]pskIdentity{{identity: other.Identity}}, ch.pskIdentities...)
			ch.pskBinders = append([][]byte{make([]byte, 32)}, ch.pskBinders...)
		}, []PSK{hostilePSK, other}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			psks := tc.psks
			if psks == nil {
				psks = []PSK{hostilePSK}
			}
			cfg := &Config{Groups: []Group{P256}, GetPSK: keyring(psks...)}
			err, a := hostileServer(t, cfg, clientScript{psks: psks, groups: []Group{X25519, P256}, hello2: tc.hello2}, nil)
			wantOutcome(t, err, a, AlertIllegalParameter, false, syscall.EACCES)
		})
	}
	for _, ext := range []uint16{0xfafa, extRecordSizeLimit} {
		t.Run(fmt.Sprintf("extension %d added", ext), func(t *testing.T) {
			body := []byte{}
			if ext == extRecordSizeLimit {
				body = []byte{0x10, 0}
			}
			cfg := &Config{Groups: []Group{P256}}
			err, a := hostileServer(t, cfg, clientScript{groups: []Group{X25519, P256},
				unsigned2: func(b []byte) []byte { return insertExtension(b, ext, body) }}, nil)
			wantOutcome(t, err, a, AlertIllegalParameter, false, syscall.EACCES)
		})
	}
	t.Run("padding may change", func(t *testing.T) {
		cfg := &Config{Groups: []Group{P256}}
		err, a := hostileServer(t, cfg, clientScript{groups: []Group{X25519, P256},
			unsigned2: func(b []byte) []byte { return insertExtension(b, extPadding, make([]byte, 40)) }}, nil)
		if err != nil || a.ok {
			t.Fatalf("engine %v, peer saw %v", err, a)
		}
	})
	t.Run("unknown extension in both", func(t *testing.T) {
		cfg := &Config{Groups: []Group{P256}}
		add := func(b []byte) []byte { return insertExtension(b, 0xfafa, []byte("x")) }
		err, a := hostileServer(t, cfg, clientScript{groups: []Group{X25519, P256}, unsigned: add, unsigned2: add}, nil)
		if err != nil || a.ok {
			t.Fatalf("engine %v, peer saw %v", err, a)
		}
	})
}

// insertExtension adds an extension in front of a ClientHello's
// extensions and fixes the lengths.
func insertExtension(ch []byte, typ uint16, body []byte) []byte {
	off := 4 + 2 + 32
	off += 1 + int(ch[off])
	off += 2 + (int(ch[off])<<8 | int(ch[off+1]))
	off += 1 + int(ch[off])
	ext := append([]byte{byte(typ >> 8), byte(typ), byte(len(body) >> 8), byte(len(body))}, body...)
	out := append(slices.Clone(ch[:off+2]), ext...)
	out = append(out, ch[off+2:]...)
	extLen := (int(ch[off])<<8 | int(ch[off+1])) + len(ext)
	out[off], out[off+1] = byte(extLen>>8), byte(extLen)
	n := len(out) - 4
	out[1], out[2], out[3] = byte(n>>16), byte(n>>8), byte(n)
	return out
}

// appendExtension adds an extension at the end of a ClientHello's
// extensions and fixes the lengths.
func appendExtension(ch []byte, typ uint16, body []byte) []byte {
	off := 4 + 2 + 32
	off += 1 + int(ch[off])
	off += 2 + (int(ch[off])<<8 | int(ch[off+1]))
	off += 1 + int(ch[off])
	out := append(slices.Clone(ch), byte(typ>>8), byte(typ), byte(len(body)>>8), byte(len(body)))
	out = append(out, body...)
	extLen := len(out) - off - 2
	out[off], out[off+1] = byte(extLen>>8), byte(extLen)
	n := len(out) - 4
	out[1], out[2], out[3] = byte(n>>16), byte(n>>8), byte(n)
	return out
}

// ---- The hostile server, against the engine's client ----

// serverScript describes one hostile server. Hooks left nil do the
// right thing.
type serverScript struct {
	mode PSKMode // the mode chosen; 0 (psk_ke) unless dhe
	dhe  bool
	// hrr, if set, is sent first (and edited by editHRR); the retry is
	// then answered as a server would.
	hrr     Group
	editHRR func(*serverHello)
	// sh edits the ServerHello, shRaw its bytes; ee edits the
	// EncryptedExtensions; finished our Finished.
	ch2       func(*clientHello) // checks the second ClientHello
	sh        func(*serverHello)
	shRaw     func([]byte) []byte
	shRecords func(p *peer, sh []byte) // sends the ServerHello
	ee        func(*encryptedExtensions)
	eeRaw     []byte // replaces the EncryptedExtensions
	finished  func([]byte) []byte
	// flight, if set, sends the encrypted part of the flight instead.
	flight func(p *peer, ee, fin []byte)
	// beforeFlight runs after the ServerHello, under no keys yet for
	// writing (p.out is set to the handshake keys after it).
	beforeFlight func(p *peer)
	// after runs once the engine's Finished is in, under application
	// keys.
	after func(p *peer)
}

func (s serverScript) run(p *peer) engineAlert {
	msg, a := p.next()
	if msg == nil {
		return a
	}
	var ch clientHello
	if err := ch.unmarshal(msg); err != nil {
		p.t.Fatalf("engine sent a bad ClientHello: %v", err)
	}
	suite := TLS_AES_128_GCM_SHA256
	psk := hostilePSK
	var prefix []byte // message_hash(CH1) || HRR, after a retry
	if s.hrr != 0 {
		d := suite.Hash().New()
		d.Write(msg)
		hrr := &serverHello{random: helloRetryRequestRandom[:], sessionID: ch.sessionID,
			cipherSuite: suite, supportedVersion: VersionTLS13, selectedGroup: s.hrr}
		if s.editHRR != nil {
			s.editHRR(hrr)
		}
		prefix = append(messageHash(d.Sum(nil)), must(hrr.marshal())...)
		p.send(recordTypeHandshake, hrr.raw)
		if msg, a = p.next(); msg == nil {
			return a
		}
		if err := ch.unmarshal(msg); err != nil {
			p.t.Fatalf("engine sent a bad second ClientHello: %v", err)
		}
		if s.ch2 != nil {
			s.ch2(&ch)
		}
	}
	// The binder: the engine's client must have computed it right.
	tr := suite.Hash().New()
	tr.Write(prefix)
	tr.Write(ch.truncated())
	if want := finishedMAC(psk.Hash, newEarlySecret(psk.Hash, psk.Key).binderKey(), tr.Sum(nil)); !bytes.Equal(ch.pskBinders[0], want) {
		p.t.Fatal("engine's binder does not verify")
	}
	tr.Reset()
	tr.Write(prefix)
	tr.Write(msg)

	sh := &serverHello{random: make([]byte, 32), sessionID: ch.sessionID, cipherSuite: suite,
		supportedVersion: VersionTLS13, hasPSK: true}
	io.ReadFull(p.rand, sh.random)
	var shared []byte
	if s.dhe {
		g := ch.keyShares[0].group
		share, sec, err := serverKeyExchange(g, ch.keyShares[0].data, p.rand)
		if err != nil {
			p.t.Fatal(err)
		}
		sh.keyShare, shared = keyShare{g, share}, sec
	}
	if s.sh != nil {
		s.sh(sh)
	}
	raw := must(sh.marshal())
	if s.shRaw != nil {
		raw = s.shRaw(slices.Clone(raw))
	}
	tr.Write(raw)
	switch {
	case s.shRecords != nil:
		s.shRecords(p, raw)
	case raw != nil:
		p.send(recordTypeHandshake, raw)
	}
	if s.beforeFlight != nil {
		s.beforeFlight(p)
	}

	hs := newEarlySecret(psk.Hash, psk.Key).handshakeSecret(shared)
	clientHS, serverHS := hs.clientTrafficSecret(tr), hs.serverTrafficSecret(tr)
	p.out.setTrafficSecret(suite, serverHS)
	ee := &encryptedExtensions{}
	if s.ee != nil {
		s.ee(ee)
	}
	eeRaw := must(ee.marshal())
	if s.eeRaw != nil {
		eeRaw = s.eeRaw
	}
	tr.Write(eeRaw)
	fin := marshalFinished(finishedMAC(suite.Hash(), serverHS, tr.Sum(nil)))
	if s.finished != nil {
		fin = s.finished(fin)
	}
	tr.Write(fin)
	if s.flight != nil {
		s.flight(p, eeRaw, fin)
	} else {
		p.send(recordTypeHandshake, append(slices.Clone(eeRaw), fin...))
	}
	ms := hs.masterSecret()
	clientApp, serverApp := ms.clientTrafficSecret(tr), ms.serverTrafficSecret(tr)
	p.out.setTrafficSecret(suite, serverApp)
	p.in.setTrafficSecret(suite, clientHS)
	msg, a = p.next()
	if msg == nil {
		return a
	}
	if err := verifyFinished(msg, suite.Hash(), clientHS, tr, "client Finished"); err != nil {
		p.t.Fatalf("engine's client Finished: %v", err)
	}
	p.in.setTrafficSecret(suite, clientApp)
	if s.after != nil {
		s.after(p)
	}
	return p.finish()
}

// hostileClient runs the engine's client, offering hostilePSK, against
// a hostile server.
func hostileClient(t *testing.T, cfg *Config, s serverScript, post func(*Conn) error) (error, engineAlert) {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.PSKs = []PSK{hostilePSK}
	cfg.CipherSuites = []CipherSuite{TLS_AES_128_GCM_SHA256}
	cfg.Rand = fixedRand(3)
	return hostileRun{
		newEngine: func(c net.Conn) *Conn { return Client(c, cfg) },
		post:      post,
		script:    s.run,
	}.run(t)
}

var bothModes = &Config{PSKModes: []PSKMode{PSKModeDHE, PSKModeKE}}

func TestHostileServerBaseline(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *Config
		s    serverScript
	}{
		{"psk_dhe_ke", nil, serverScript{dhe: true}},
		{"psk_ke", &Config{PSKModes: []PSKMode{PSKModeKE}}, serverScript{}},
		{"HelloRetryRequest", &Config{Groups: []Group{X25519, P256}}, serverScript{dhe: true, hrr: P256}},
		{"CCS after the ServerHello", nil, serverScript{dhe: true,
			beforeFlight: func(p *peer) { p.send(recordTypeChangeCipherSpec, []byte{1}) }}},
		{"EE and Finished in two records", nil, serverScript{dhe: true, flight: func(p *peer, ee, fin []byte) {
			p.send(recordTypeHandshake, ee)
			p.send(recordTypeHandshake, fin)
		}}},
		{"NewSessionTicket and data after the handshake", nil, serverScript{dhe: true, after: func(p *peer) {
			p.send(recordTypeHandshake, []byte{typeNewSessionTicket, 0, 0, 3, 1, 2, 3})
			p.send(recordTypeApplicationData, []byte("data"))
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err, a := hostileClient(t, tc.cfg, tc.s, nil)
			if err != nil || a.ok {
				t.Fatalf("engine %v, peer saw %v", err, a)
			}
		})
	}
}

func TestHostileServer(t *testing.T) {
	dhe := serverScript{dhe: true}
	with := func(f func(*serverScript)) serverScript { s := dhe; f(&s); return s }
	cases := []struct {
		name     string
		cfg      *Config
		script   serverScript
		alert    Alert
		received bool
		status   syscall.Errno
	}{
		{name: "server Finished wrong", script: with(func(s *serverScript) { s.finished = flip }),
			alert: AlertDecryptError, status: syscall.EACCES},
		{name: "server Finished short", script: with(func(s *serverScript) {
			s.finished = func(b []byte) []byte { b = b[:len(b)-1]; b[3]--; return b }
		}), alert: AlertDecodeError, status: syscall.EACCES},
		{name: "psk_ke, which was not offered", script: serverScript{},
			alert: AlertMissingExtension, status: syscall.EACCES},
		{name: "key share when only psk_ke was offered", cfg: &Config{PSKModes: []PSKMode{PSKModeKE}},
			script: serverScript{sh: func(sh *serverHello) { sh.keyShare = keyShare{X25519, make([]byte, 32)} }},
			alert:  AlertIllegalParameter, status: syscall.EACCES},
		{name: "key share for a group we sent none for", cfg: &Config{Groups: []Group{X25519, P256}},
			script: with(func(s *serverScript) {
				s.sh = func(sh *serverHello) { sh.keyShare = keyShare{P256, sh.keyShare.data} }
			}), alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "selected_identity out of range", cfg: bothModes,
			script: with(func(s *serverScript) { s.sh = func(sh *serverHello) { sh.selectedIdentity = 1 } }),
			alert:  AlertIllegalParameter, status: syscall.EACCES},
		{name: "no pre_shared_key", script: with(func(s *serverScript) { s.sh = func(sh *serverHello) { sh.hasPSK = false } }),
			alert: AlertHandshakeFailure, status: syscall.EACCES},
		{name: "cipher suite not offered", script: with(func(s *serverScript) {
			s.sh = func(sh *serverHello) { sh.cipherSuite = TLS_CHACHA20_POLY1305_SHA256 }
		}), alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "session ID not echoed", script: with(func(s *serverScript) {
			s.sh = func(sh *serverHello) { sh.sessionID = []byte("x") }
		}), alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "compression", script: with(func(s *serverScript) { s.sh = func(sh *serverHello) { sh.compression = 1 } }),
			alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "TLS 1.2", script: with(func(s *serverScript) { s.sh = func(sh *serverHello) { sh.supportedVersion = 0x0303 } }),
			alert: AlertProtocolVersion, status: syscall.EACCES},
		{name: "cookie outside a HelloRetryRequest", script: with(func(s *serverScript) {
			s.sh = func(sh *serverHello) { sh.cookie = []byte("c") }
		}), alert: AlertUnsupportedExtension, status: syscall.EACCES},
		{name: "EncryptedExtensions: early_data not offered", script: with(func(s *serverScript) {
			s.eeRaw = []byte{typeEncryptedExtensions, 0, 0, 6, 0, 4, 0, byte(extEarlyData), 0, 0}
		}), alert: AlertUnsupportedExtension, status: syscall.EACCES},
		{name: "EncryptedExtensions: record_size_limit not offered", script: with(func(s *serverScript) {
			s.ee = func(ee *encryptedExtensions) { ee.recordSizeLimit = 1024 }
		}), alert: AlertUnsupportedExtension, status: syscall.EACCES},
		{name: "EncryptedExtensions: server_name not sent", script: with(func(s *serverScript) {
			s.ee = func(ee *encryptedExtensions) { ee.serverNameAck = true }
		}), alert: AlertUnsupportedExtension, status: syscall.EACCES},
		{name: "EncryptedExtensions: key_share", script: with(func(s *serverScript) {
			s.eeRaw = []byte{typeEncryptedExtensions, 0, 0, 6, 0, 4, 0, byte(extKeyShare), 0, 0}
		}), alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "EncryptedExtensions: unknown extension", script: with(func(s *serverScript) {
			s.eeRaw = []byte{typeEncryptedExtensions, 0, 0, 6, 0, 4, 0xfa, 0xfa, 0, 0}
		}), alert: AlertUnsupportedExtension, status: syscall.EACCES},
		{name: "certificate in a PSK handshake", script: with(func(s *serverScript) {
			s.flight = func(p *peer, ee, fin []byte) {
				p.send(recordTypeHandshake, append(slices.Clone(ee), typeCertificate, 0, 0, 4, 0, 0, 0, 0))
			}
		}), alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "plaintext alert once keys are set", script: with(func(s *serverScript) {
			s.flight = func(p *peer, ee, fin []byte) { p.raw(record(recordTypeAlert, []byte{2, byte(AlertHandshakeFailure)})) }
		}), alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "protected alert in place of EncryptedExtensions", script: with(func(s *serverScript) {
			s.flight = func(p *peer, ee, fin []byte) { p.send(recordTypeAlert, []byte{2, byte(AlertUnknownPSKIdentity)}) }
		}), alert: AlertUnknownPSKIdentity, received: true, status: syscall.EKEYREJECTED},
		{name: "plaintext record after the keys", script: with(func(s *serverScript) {
			s.flight = func(p *peer, ee, fin []byte) { p.raw(record(recordTypeHandshake, append(ee, fin...))) }
		}), alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "CCS inside the ServerHello", script: with(func(s *serverScript) {
			s.shRecords = func(p *peer, sh []byte) {
				p.send(recordTypeHandshake, sh[:10])
				p.send(recordTypeChangeCipherSpec, []byte{1})
				p.send(recordTypeHandshake, sh[10:])
			}
		}), alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "inner plaintext over 2^14+1", script: with(func(s *serverScript) {
			s.flight = func(p *peer, ee, fin []byte) { p.send(recordTypeHandshake, make([]byte, 1<<14+1)) }
		}), alert: AlertRecordOverflow, status: syscall.EACCES},
		{name: "padding past 2^14+1", script: with(func(s *serverScript) {
			s.flight = func(p *peer, ee, fin []byte) { p.sendPadded(recordTypeHandshake, ee, 1<<14) }
		}), alert: AlertRecordOverflow, status: syscall.EACCES},
		{name: "HelloRetryRequest for a group already shared", cfg: &Config{Groups: []Group{X25519, P256}},
			script: serverScript{dhe: true, hrr: X25519}, alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "HelloRetryRequest for a group not offered", cfg: &Config{Groups: []Group{X25519, P256}},
			script: serverScript{dhe: true, hrr: P384}, alert: AlertIllegalParameter, status: syscall.EACCES},
		{name: "HelloRetryRequest that changes nothing", cfg: &Config{Groups: []Group{X25519, P256}},
			script: serverScript{dhe: true, hrr: P256, editHRR: func(h *serverHello) { h.selectedGroup = 0 }},
			alert:  AlertIllegalParameter, status: syscall.EACCES},
		{name: "HelloRetryRequest with a suite not offered", cfg: &Config{Groups: []Group{X25519, P256}},
			script: serverScript{dhe: true, hrr: P256, editHRR: func(h *serverHello) { h.cipherSuite = TLS_AES_256_GCM_SHA384 }},
			alert:  AlertIllegalParameter, status: syscall.EACCES},
		{name: "second HelloRetryRequest", cfg: &Config{Groups: []Group{X25519, P256, P384}},
			script: serverScript{dhe: true, hrr: P256, shRaw: func([]byte) []byte {
				hrr := &serverHello{random: helloRetryRequestRandom[:], cipherSuite: TLS_AES_128_GCM_SHA256,
					supportedVersion: VersionTLS13, selectedGroup: P384}
				return must(hrr.marshal())
			}}, alert: AlertUnexpectedMessage, status: syscall.EACCES},
		{name: "received alert before the ServerHello", script: with(func(s *serverScript) {
			s.shRaw = func([]byte) []byte { return nil }
			s.beforeFlight = func(p *peer) { p.raw(record(recordTypeAlert, []byte{2, byte(AlertDecryptError)})) }
		}), alert: AlertDecryptError, received: true, status: syscall.EACCES},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err, a := hostileClient(t, tc.cfg, tc.script, nil)
			wantOutcome(t, err, a, tc.alert, tc.received, tc.status)
		})
	}
}

// TestHostilePostHandshake: after the handshake the engine reads what
// the peer sends; KeyUpdates and handshake messages are bounded.
func TestHostilePostHandshake(t *testing.T) {
	keyUpdates := func(n int, req uint8) func(p *peer) {
		return func(p *peer) {
			for range n {
				p.send(recordTypeHandshake, marshalKeyUpdate(req))
				p.out.setTrafficSecret(p.out.suite, NextTrafficSecret(p.out.suite, p.out.secret))
			}
			p.send(recordTypeApplicationData, []byte("after the updates"))
		}
	}
	withData := func(p *peer) {
		for range 3 * maxKeyUpdates {
			p.send(recordTypeHandshake, marshalKeyUpdate(0))
			p.out.setTrafficSecret(p.out.suite, NextTrafficSecret(p.out.suite, p.out.secret))
			p.send(recordTypeApplicationData, []byte("x"))
		}
	}
	bigMessage := func(p *peer) {
		// A message that announces 1 MiB, sent a record at a time.
		p.send(recordTypeHandshake, []byte{typeNewSessionTicket, 0x10, 0, 0})
		for range 4 {
			p.send(recordTypeHandshake, make([]byte, 1<<14))
		}
	}
	type side struct {
		name string
		run  func(t *testing.T, after func(*peer)) (error, engineAlert)
	}
	sides := []side{
		{"server", func(t *testing.T, after func(*peer)) (error, engineAlert) {
			return hostileServer(t, nil, clientScript{after: after}, readAll)
		}},
		{"client", func(t *testing.T, after func(*peer)) (error, engineAlert) {
			return hostileClient(t, nil, serverScript{dhe: true, after: after}, readAll)
		}},
	}
	for _, sd := range sides {
		t.Run(sd.name, func(t *testing.T) {
			t.Run("KeyUpdates up to the limit", func(t *testing.T) {
				if err, a := sd.run(t, keyUpdates(maxKeyUpdates, 0)); err != io.EOF || a.ok {
					t.Errorf("engine %v, peer saw %v", err, a)
				}
			})
			t.Run("KeyUpdates between data", func(t *testing.T) {
				if err, a := sd.run(t, withData); err != io.EOF || a.ok {
					t.Errorf("engine %v, peer saw %v", err, a)
				}
			})
			t.Run("KeyUpdate flood", func(t *testing.T) {
				err, a := sd.run(t, keyUpdates(maxKeyUpdates+1, 0))
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("huge post-handshake message", func(t *testing.T) {
				err, a := sd.run(t, bigMessage)
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("plaintext alert", func(t *testing.T) {
				err, a := sd.run(t, func(p *peer) { p.raw(record(recordTypeAlert, []byte{2, byte(AlertInternalError)})) })
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("CCS", func(t *testing.T) {
				err, a := sd.run(t, func(p *peer) { p.raw(record(recordTypeChangeCipherSpec, []byte{1})) })
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("KeyUpdate with a bad request value", func(t *testing.T) {
				err, a := sd.run(t, func(p *peer) { p.send(recordTypeHandshake, marshalKeyUpdate(2)) })
				wantOutcome(t, err, a, AlertIllegalParameter, false, syscall.EACCES)
			})
			t.Run("data inside a fragmented message", func(t *testing.T) {
				err, a := sd.run(t, func(p *peer) {
					p.send(recordTypeHandshake, marshalKeyUpdate(0)[:2])
					p.send(recordTypeApplicationData, []byte("x"))
				})
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("KeyUpdate requested", func(t *testing.T) {
				// The engine answers under its old keys, then switches.
				err, a := sd.run(t, func(p *peer) {
					p.send(recordTypeHandshake, marshalKeyUpdate(1))
					p.out.setTrafficSecret(p.out.suite, NextTrafficSecret(p.out.suite, p.out.secret))
					typ, data, err := p.record()
					if err != nil || typ != recordTypeHandshake || !bytes.Equal(data, marshalKeyUpdate(0)) {
						t.Errorf("engine answered %d %x %v, want KeyUpdate(update_not_requested)", typ, data, err)
					}
				})
				if err != io.EOF || a.ok {
					t.Errorf("engine %v, peer saw %v", err, a)
				}
			})
			t.Run("close_notify", func(t *testing.T) {
				err, a := sd.run(t, func(p *peer) { p.send(recordTypeAlert, []byte{1, 0}) })
				if err != io.EOF || a.ok {
					t.Errorf("engine %v, peer saw %v", err, a)
				}
			})
			t.Run("fatal alert", func(t *testing.T) {
				err, a := sd.run(t, func(p *peer) { p.send(recordTypeAlert, []byte{2, byte(AlertUnknownPSKIdentity)}) })
				wantOutcome(t, err, a, AlertUnknownPSKIdentity, true, syscall.EKEYREJECTED)
			})
		})
	}
}

// TestMarshalTooLarge: a message whose fields overflow their length
// prefixes is an error, never a panic (issue 14).
func TestMarshalTooLarge(t *testing.T) {
	ch := &clientHello{random: make([]byte, 32), cipherSuites: DefaultCipherSuites,
		pskIdentities: []pskIdentity{{identity: make([]byte, 0xffff)}}, pskBinders: [][]byte{make([]byte, 32)}}
	if _, err := ch.marshal(); err == nil {
		t.Error("ClientHello with a 64 KiB identity marshalled")
	}
	sh := &serverHello{random: make([]byte, 32), keyShare: keyShare{X25519, make([]byte, 0x10000)}}
	if _, err := sh.marshal(); err == nil {
		t.Error("ServerHello with a 64 KiB key share marshalled")
	}
	psk := hostilePSK
	psk.Identity = make([]byte, 65400)
	cc, _ := testtool.TCPPair(t)
	err := Client(cc, &Config{PSKs: []PSK{psk}}).Handshake(context.Background())
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("at most")) {
		t.Errorf("65,400-byte identity: %v, want a clear refusal", err)
	}
}
