package tls13

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
)

// maxEarlyDataSkip bounds how much 0-RTT data a server that declines
// early data discards before it insists on a decryptable record.
const maxEarlyDataSkip = 1 << 16

// serverHandshakeState is what the server learns as the handshake runs
// (RFC 8446, 2: ClientHello → ServerHello, {EncryptedExtensions},
// {Finished} → {Finished}).
type serverHandshakeState struct {
	c     *Conn
	ctx   context.Context
	hello *clientHello

	psk      *PSK
	pskIndex int
	suite    CipherSuite
	mode     PSKMode
	group    Group // 0 for psk_ke
	share    []byte
	// params are the Config's settings narrowed by the chosen PSK.
	suites []CipherSuite
	groups []Group
	modes  []PSKMode

	transcript   hash.Hash
	early        *earlySecret
	hsSecret     *handshakeSecret
	clientSecret []byte // client handshake traffic secret
	sentCCS      bool
	didHRR       bool
}

func (c *Conn) serverHandshake(ctx context.Context) error {
	hs := &serverHandshakeState{c: c, ctx: ctx}
	defer hs.zero()
	if err := hs.readClientHello(); err != nil {
		return err
	}
	if err := hs.checkBinder(); err != nil {
		return err
	}
	if err := hs.sendServerFlight(); err != nil {
		return err
	}
	return hs.readClientFinished()
}

func (hs *serverHandshakeState) zero() {
	if hs.early != nil {
		clear(hs.early.secret)
	}
	if hs.hsSecret != nil {
		clear(hs.hsSecret.secret)
	}
	clear(hs.clientSecret)
}

// readClientHello reads the ClientHello and settles PSK, suite, mode and
// group, going through a HelloRetryRequest when the client sent no share
// for a group we accept.
func (hs *serverHandshakeState) readClientHello() error {
	c := hs.c
	msg, err := c.expectMessage(typeClientHello, "ClientHello")
	if err != nil {
		return err
	}
	c.helloSeen = true
	hello := new(clientHello)
	if err := hello.unmarshal(msg); err != nil {
		return err
	}
	if err := hs.checkClientHello(hello); err != nil {
		return err
	}
	if hello.earlyData {
		// We never accept 0-RTT; skip what the client sent under it.
		c.skipEarly = maxEarlyDataSkip
	}
	hs.hello = hello
	if err := hs.choose(); err != nil {
		return err
	}
	if hs.mode == PSKModeDHE && hs.share == nil {
		return hs.retry()
	}
	hs.transcript = hs.suite.Hash().New()
	hs.transcript.Write(hello.raw[:len(hello.raw)-hello.bindersLen])
	return nil
}

func (hs *serverHandshakeState) checkClientHello(hello *clientHello) error {
	if !slices.Contains(hello.supportedVersions, VersionTLS13) {
		return alertf(AlertProtocolVersion, "client does not offer TLS 1.3")
	}
	if len(hello.compressionMethods) != 1 || hello.compressionMethods[0] != 0 {
		return alertf(AlertIllegalParameter, "client offered compression")
	}
	if hello.pskIdentities == nil {
		return alertf(AlertHandshakeFailure, "client offered no PSK (only PSK authentication is configured)")
	}
	if hello.pskModes == nil {
		return alertf(AlertMissingExtension, "pre_shared_key without psk_key_exchange_modes")
	}
	if hello.keyShares != nil && hello.supportedGroups == nil {
		return alertf(AlertMissingExtension, "key_share without supported_groups")
	}
	for _, ks := range hello.keyShares {
		if !slices.Contains(hello.supportedGroups, ks.group) {
			return alertf(AlertIllegalParameter, "key share for %v, which is not in supported_groups", ks.group)
		}
	}
	return nil
}

// choose picks the first offered identity we know and can use, then the
// cipher suite (our preference among the client's, of the PSK's hash),
// the PSK mode and, for psk_dhe_ke, the group.
func (hs *serverHandshakeState) choose() error {
	c, hello := hs.c, hs.hello
	known := false
	var lastReason error
	for i, id := range hello.pskIdentities {
		if i == maxIdentities {
			break
		}
		psk, err := c.config.GetPSK(id.identity)
		if errors.Is(err, ErrUnknownPSK) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tls13: looking up PSK identity %q: %w", id.identity, err)
		}
		if len(psk.Identity) == 0 {
			psk.Identity = clone(id.identity)
		}
		if err := psk.check(); err != nil {
			return err
		}
		known = true
		if err := hs.tryPSK(psk, i); err != nil {
			lastReason = err
			continue
		}
		return nil
	}
	if !known {
		return alertf(AlertUnknownPSKIdentity, "none of the %d offered PSK identities is known", len(hello.pskIdentities))
	}
	return lastReason
}

// tryPSK settles suite, mode and group for one PSK, or says why it cannot
// be used.
func (hs *serverHandshakeState) tryPSK(psk *PSK, index int) error {
	cfg, hello := hs.c.config, hs.hello
	suites, groups, modes := cfg.cipherSuites(), cfg.groups(), cfg.pskModes(false)
	if psk.CipherSuites != nil {
		suites = psk.CipherSuites
	}
	if psk.Groups != nil {
		groups = psk.Groups
	}
	if psk.PSKModes != nil {
		modes = psk.PSKModes
	}
	suite := CipherSuite(0)
	for _, s := range suites {
		if s.Supported() && s.Hash() == psk.Hash && slices.Contains(hello.cipherSuites, s) &&
			(!hs.didHRR || s == hs.suite) {
			suite = s
			break
		}
	}
	if suite == 0 {
		return alertf(AlertHandshakeFailure, "no common cipher suite for %v PSK %q", psk.Hash, psk.Identity)
	}

	// Our mode preference, among the client's; psk_dhe_ke needs a group.
	var mode PSKMode = 255
	var group Group
	var share []byte
	for _, m := range modes {
		if !slices.Contains(hello.pskModes, uint8(m)) {
			continue
		}
		if m == PSKModeKE {
			mode = m
			break
		}
		// A group with a share avoids a round trip; else any common one.
		for _, g := range groups {
			if i := slices.IndexFunc(hello.keyShares, func(ks keyShare) bool { return ks.group == g }); i >= 0 && g.Supported() {
				group, share = g, hello.keyShares[i].data
				break
			}
		}
		if group == 0 && !hs.didHRR {
			for _, g := range groups {
				if g.Supported() && slices.Contains(hello.supportedGroups, g) {
					group = g
					break
				}
			}
		}
		if group != 0 {
			mode = m
			break
		}
	}
	if mode == 255 {
		if hs.didHRR {
			return alertf(AlertIllegalParameter, "second ClientHello has no key share for %v", hs.group)
		}
		return alertf(AlertHandshakeFailure, "no common PSK mode (and group) for PSK %q", psk.Identity)
	}
	hs.psk, hs.pskIndex, hs.suite, hs.mode, hs.group, hs.share = psk, index, suite, mode, group, share
	hs.suites, hs.groups, hs.modes = suites, groups, modes
	if mode == PSKModeKE {
		hs.group, hs.share = 0, nil
	}
	return nil
}

// retry sends a HelloRetryRequest for hs.group and reads the second
// ClientHello, which must differ only as RFC 8446, 4.1.2 allows.
func (hs *serverHandshakeState) retry() error {
	c, hello := hs.c, hs.hello
	hs.didHRR = true
	hs.transcript = hs.suite.Hash().New()
	ch1 := hs.suite.Hash().New()
	ch1.Write(hello.raw)
	hs.transcript.Write(messageHash(ch1.Sum(nil)))

	hrr := &serverHello{
		random:           helloRetryRequestRandom[:],
		sessionID:        hello.sessionID,
		cipherSuite:      hs.suite,
		supportedVersion: VersionTLS13,
		selectedGroup:    hs.group,
	}
	if _, err := hrr.marshal(); err != nil {
		return err
	}
	hs.transcript.Write(hrr.raw)
	if err := c.writeRecordLocked(recordTypeHandshake, hrr.raw); err != nil {
		return err
	}
	if err := hs.maybeSendCCS(); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}

	msg, err := c.expectMessage(typeClientHello, "second ClientHello")
	if err != nil {
		return err
	}
	hello2 := new(clientHello)
	if err := hello2.unmarshal(msg); err != nil {
		return err
	}
	if err := hs.checkClientHello(hello2); err != nil {
		return err
	}
	if err := checkRetriedHello(hello, hello2, hs.group); err != nil {
		return err
	}
	c.skipEarly = 0 // early data can only follow the first ClientHello
	hs.hello = hello2
	group := hs.group
	if err := hs.choose(); err != nil {
		return err
	}
	if hs.mode != PSKModeDHE || hs.group != group || hs.share == nil {
		return alertf(AlertIllegalParameter, "second ClientHello does not answer the HelloRetryRequest")
	}
	hs.transcript.Write(hello2.raw[:len(hello2.raw)-hello2.bindersLen])
	return nil
}

// checkRetriedHello enforces the changes a second ClientHello may make
// (RFC 8446, 4.1.2): a key share for the group asked for, no early_data,
// the cookie echoed (we send none), padding, and the pre_shared_key
// binders, with PSKs the selected suite cannot use dropped. Everything
// else, the random and every other extension included, stays the same.
func checkRetriedHello(ch1, ch2 *clientHello, group Group) error {
	switch {
	case len(ch2.keyShares) != 1 || ch2.keyShares[0].group != group:
		return alertf(AlertIllegalParameter, "second ClientHello must carry exactly one key share, for %v", group)
	case ch2.earlyData:
		return alertf(AlertIllegalParameter, "second ClientHello offers early data")
	case ch2.cookie != nil:
		return alertf(AlertIllegalParameter, "second ClientHello has a cookie we did not send")
	case string(ch1.random) != string(ch2.random),
		string(ch1.sessionID) != string(ch2.sessionID),
		!slices.Equal(ch1.cipherSuites, ch2.cipherSuites),
		string(ch1.compressionMethods) != string(ch2.compressionMethods),
		!sameRetainedExtensions(ch1.raw, ch2.raw):
		return alertf(AlertIllegalParameter, "second ClientHello changed more than the HelloRetryRequest allows")
	case !isSubsequence(ch2.pskIdentities, ch1.pskIdentities):
		return alertf(AlertIllegalParameter, "second ClientHello offers PSK identities the first did not")
	}
	return nil
}

// sameRetainedExtensions compares, in order, the extensions of two
// parsed ClientHellos other than those a retry may change.
func sameRetainedExtensions(raw1, raw2 []byte) bool {
	e1, e2 := helloExtensions(raw1), helloExtensions(raw2)
	for {
		t1, b1, ok1 := e1.nextRetained()
		t2, b2, ok2 := e2.nextRetained()
		if ok1 != ok2 || t1 != t2 || string(b1) != string(b2) {
			return false
		}
		if !ok1 {
			return true
		}
	}
}

// isSubsequence reports whether every identity of sub appears in full,
// in the same order, in of (age included, which is 0 for external PSKs).
func isSubsequence(sub, of []pskIdentity) bool {
	for _, id := range sub {
		i := slices.IndexFunc(of, func(o pskIdentity) bool {
			return string(o.identity) == string(id.identity) && o.age == id.age
		})
		if i < 0 {
			return false
		}
		of = of[i+1:]
	}
	return true
}

// checkBinder verifies the binder of the chosen PSK, and only that one
// (RFC 8446, 4.2.11), in constant time.
func (hs *serverHandshakeState) checkBinder() error {
	h := hs.psk.Hash
	hs.early = newEarlySecret(h, hs.psk.Key)
	binderKey := hs.early.binderKey()
	defer clear(binderKey)
	want := finishedMAC(h, binderKey, hs.transcript.Sum(nil))
	if !hmac.Equal(hs.hello.pskBinders[hs.pskIndex], want) {
		return alertf(AlertDecryptError, "binder for PSK %q does not verify (wrong key?)", hs.psk.Identity)
	}
	// The transcript covers the whole ClientHello from here on.
	hs.transcript.Write(hs.hello.raw[len(hs.hello.raw)-hs.hello.bindersLen:])
	return nil
}

func (hs *serverHandshakeState) maybeSendCCS() error {
	// Middlebox compatibility mode (RFC 8446, D.4): a client that sent a
	// session ID expects a dummy change_cipher_spec after our first
	// handshake message.
	if hs.sentCCS || len(hs.hello.sessionID) == 0 {
		return nil
	}
	hs.sentCCS = true
	return hs.c.writeRecordLocked(recordTypeChangeCipherSpec, []byte{1})
}

// sendServerFlight sends ServerHello, EncryptedExtensions and Finished
// in one write and derives every secret of the handshake.
func (hs *serverHandshakeState) sendServerFlight() error {
	c, cfg := hs.c, hs.c.config
	sh := &serverHello{
		random:           make([]byte, 32),
		sessionID:        hs.hello.sessionID,
		cipherSuite:      hs.suite,
		supportedVersion: VersionTLS13,
		hasPSK:           true,
		selectedIdentity: uint16(hs.pskIndex),
	}
	if _, err := io.ReadFull(cfg.rand(), sh.random); err != nil {
		return err
	}
	var shared []byte
	if hs.mode == PSKModeDHE {
		share, s, err := serverKeyExchange(hs.group, hs.share, cfg.rand())
		if err != nil {
			return err
		}
		shared = s
		sh.keyShare = keyShare{hs.group, share}
	}
	if _, err := sh.marshal(); err != nil {
		return err
	}
	hs.transcript.Write(sh.raw)
	if err := c.writeRecordLocked(recordTypeHandshake, sh.raw); err != nil {
		return err
	}
	if err := hs.maybeSendCCS(); err != nil {
		return err
	}

	hs.hsSecret = hs.early.handshakeSecret(shared)
	clear(shared)
	hs.clientSecret = hs.hsSecret.clientTrafficSecret(hs.transcript)
	if err := c.out.setTrafficSecret(hs.suite, hs.hsSecret.serverTrafficSecret(hs.transcript)); err != nil {
		return err
	}
	cfg.logKeys(hs.hello.random, keyLogClientHandshake, hs.clientSecret, keyLogServerHandshake, c.out.secret)

	ee := &encryptedExtensions{}
	if hs.hello.recordSizeLimit != 0 {
		c.maxOut = min(int(hs.hello.recordSizeLimit)-1, maxPlaintext)
		c.session.PeerRecordSizeLimit = int(hs.hello.recordSizeLimit)
		if cfg.RecordSizeLimit != 0 {
			ee.recordSizeLimit = uint16(cfg.RecordSizeLimit)
		}
	}
	if _, err := ee.marshal(); err != nil {
		return err
	}
	hs.transcript.Write(ee.raw)
	fin := marshalFinished(finishedMAC(hs.suite.Hash(), c.out.secret, hs.transcript.Sum(nil)))
	hs.transcript.Write(fin)
	// One protected record for both: one AEAD call, one segment.
	if err := c.writeRecordLocked(recordTypeHandshake, append(ee.raw, fin...)); err != nil {
		return err
	}

	ms := hs.hsSecret.masterSecret()
	defer ms.zero()
	clientApp := ms.clientTrafficSecret(hs.transcript)
	serverApp := ms.serverTrafficSecret(hs.transcript)
	cfg.logKeys(hs.hello.random, keyLogClientTraffic, clientApp, keyLogServerTraffic, serverApp)
	if err := c.out.setTrafficSecret(hs.suite, serverApp); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	// Read keys: client handshake traffic now, application after its
	// Finished; keep the latter until then.
	if err := c.checkKeyChange(); err != nil {
		return err
	}
	if err := c.in.setTrafficSecret(hs.suite, hs.clientSecret); err != nil {
		return err
	}
	hs.clientSecret = clientApp
	return nil
}

func (hs *serverHandshakeState) readClientFinished() error {
	c, h := hs.c, hs.suite.Hash()
	msg, err := c.readHandshakeLocked()
	if err != nil {
		return err
	}
	if msg[0] != typeFinished {
		return alertf(AlertUnexpectedMessage, "got handshake message %d, want Finished", msg[0])
	}
	if err := verifyFinished(msg, h, c.in.secret, hs.transcript, "client Finished does not verify"); err != nil {
		return err
	}
	if err := c.checkKeyChange(); err != nil {
		return err
	}
	if err := c.in.setTrafficSecret(hs.suite, hs.clientSecret); err != nil {
		return err
	}
	hs.clientSecret = nil // now owned by c.in
	c.session = Session{
		Suite:                hs.suite,
		Group:                hs.group,
		PSKIdentity:          hs.psk.Identity,
		PSKIndex:             hs.pskIndex,
		PSKMode:              hs.mode,
		Tag:                  hs.psk.Tag,
		DidHelloRetryRequest: hs.didHRR,
		PeerRecordSizeLimit:  c.session.PeerRecordSizeLimit,
		ServerName:           hs.hello.serverName,
	}
	return nil
}
