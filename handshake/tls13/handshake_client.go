package tls13

import (
	"context"
	"crypto"
	"hash"
	"io"
	"slices"
)

// clientHandshakeState is what the client learns as the handshake runs
// (RFC 8446, 2: ClientHello → ServerHello → {EncryptedExtensions} →
// {Finished} → {Finished}).
type clientHandshakeState struct {
	c     *Conn
	ctx   context.Context
	hello *clientHello

	// offered[i] is the PSK behind the i-th identity of the current
	// ClientHello; after a HelloRetryRequest some may be dropped.
	offered []offeredPSK
	keys    []groupKey // one per key share sent

	// Messages are kept raw until the ServerHello fixes the hash.
	ch1, hrr []byte

	suite      CipherSuite
	transcript hash.Hash
	psk        offeredPSK
	mode       PSKMode
	group      Group

	hsSecret     *handshakeSecret
	clientSecret []byte // client handshake traffic secret, for Finished
	didHRR       bool
}

type offeredPSK struct {
	psk   *PSK
	index int // in Config.PSKs
	early *earlySecret
}

type groupKey struct {
	group Group
	key   clientKey
}

func (c *Conn) clientHandshake(ctx context.Context) error {
	hs := &clientHandshakeState{c: c, ctx: ctx}
	defer hs.zero()
	if err := hs.sendClientHello(); err != nil {
		return err
	}
	sh, err := hs.readServerHello()
	if err != nil {
		return err
	}
	if sh.isHRR() {
		if err := hs.processHelloRetryRequest(sh); err != nil {
			return err
		}
		if sh, err = hs.readServerHello(); err != nil {
			return err
		}
		if sh.isHRR() {
			return alertf(AlertUnexpectedMessage, "second HelloRetryRequest")
		}
	}
	if err := hs.processServerHello(sh); err != nil {
		return err
	}
	if err := hs.readEncryptedExtensions(); err != nil {
		return err
	}
	return hs.readServerFinishedAndReply()
}

func (hs *clientHandshakeState) zero() {
	for _, o := range hs.offered {
		clear(o.early.secret)
	}
	if hs.hsSecret != nil {
		clear(hs.hsSecret.secret)
	}
	clear(hs.clientSecret)
}

// sendClientHello offers every configured PSK, with a binder each, and
// key shares for the first groups.
func (hs *clientHandshakeState) sendClientHello() error {
	cfg := hs.c.config
	hello := &clientHello{
		random:            make([]byte, 32),
		supportedVersions: []uint16{VersionTLS13},
		serverName:        cfg.ServerName,
	}
	if _, err := io.ReadFull(cfg.rand(), hello.random); err != nil {
		return err
	}
	// Only suites some PSK can use: a PSK is bound to its hash.
	for _, s := range cfg.cipherSuites() {
		if slices.ContainsFunc(cfg.PSKs, func(p PSK) bool { return p.Hash == s.Hash() }) {
			hello.cipherSuites = append(hello.cipherSuites, s)
		}
	}
	if len(hello.cipherSuites) == 0 {
		return alertf(AlertInternalError, "no enabled cipher suite matches the PSKs' hashes")
	}
	modes := cfg.pskModes(true)
	for _, m := range modes {
		hello.pskModes = append(hello.pskModes, uint8(m))
	}
	if slices.Contains(modes, PSKModeDHE) {
		hello.supportedGroups = cfg.groups()
		hello.keyShares = []keyShare{}
		n := max(cfg.KeyShares, 1)
		for _, g := range hello.supportedGroups[:min(n, len(hello.supportedGroups))] {
			key, share, err := newClientKey(g, cfg.rand())
			if err != nil {
				return err
			}
			hs.keys = append(hs.keys, groupKey{g, key})
			hello.keyShares = append(hello.keyShares, keyShare{g, share})
		}
	}
	hello.signatureAlgorithms = defaultSignatureAlgorithms
	if cfg.RecordSizeLimit != 0 {
		hello.recordSizeLimit = uint16(cfg.RecordSizeLimit)
	}
	for i := range cfg.PSKs {
		p := &cfg.PSKs[i]
		hs.offered = append(hs.offered, offeredPSK{psk: p, index: i, early: newEarlySecret(p.Hash, p.Key)})
	}
	hs.hello = hello
	if err := hs.marshalWithBinders(nil); err != nil {
		return err
	}
	hs.ch1 = hello.raw
	hs.c.helloSeen = true
	return hs.writeHandshake(hello.raw)
}

// marshalWithBinders encodes the current ClientHello and fills in one
// binder per offered PSK over Truncate(ClientHello), prefixed by the
// messages before it (message_hash and HelloRetryRequest after a retry).
func (hs *clientHandshakeState) marshalWithBinders(prefix func(crypto.Hash) []byte) error {
	hello := hs.hello
	hello.pskIdentities = hello.pskIdentities[:0]
	hello.pskBinders = hello.pskBinders[:0]
	for _, o := range hs.offered {
		hello.pskIdentities = append(hello.pskIdentities, pskIdentity{identity: o.psk.Identity})
		hello.pskBinders = append(hello.pskBinders, make([]byte, o.psk.Hash.Size()))
	}
	if _, err := hello.marshal(); err != nil {
		return err
	}
	binders := make([][]byte, len(hs.offered))
	var sums [2][]byte // transcript hash per hash function, computed once
	for i, o := range hs.offered {
		slot := 0
		if o.psk.Hash == crypto.SHA384 {
			slot = 1
		}
		if sums[slot] == nil {
			h := o.psk.Hash.New()
			if prefix != nil {
				h.Write(prefix(o.psk.Hash))
			}
			h.Write(hello.truncated())
			sums[slot] = h.Sum(nil)
		}
		binderKey := o.early.binderKey()
		binders[i] = finishedMAC(o.psk.Hash, binderKey, sums[slot])
		clear(binderKey)
	}
	hello.updateBinders(binders)
	return nil
}

func (hs *clientHandshakeState) writeHandshake(msg []byte) error {
	c := hs.c
	if err := c.writeRecordLocked(recordTypeHandshake, msg); err != nil {
		return err
	}
	return c.flushLocked()
}

func (hs *clientHandshakeState) readServerHello() (*serverHello, error) {
	msg, err := hs.c.expectMessage(typeServerHello, "ServerHello")
	if err != nil {
		return nil, err
	}
	sh := new(serverHello)
	if err := sh.unmarshal(msg); err != nil {
		return nil, err
	}
	if sh.supportedVersion != VersionTLS13 {
		return nil, alertf(AlertProtocolVersion, "server negotiated version %#04x, only TLS 1.3 is supported", sh.supportedVersion)
	}
	if string(sh.sessionID) != string(hs.hello.sessionID) {
		return nil, alertf(AlertIllegalParameter, "server did not echo the session ID")
	}
	if sh.compression != 0 {
		return nil, alertf(AlertIllegalParameter, "server selected compression %d", sh.compression)
	}
	if !slices.Contains(hs.hello.cipherSuites, sh.cipherSuite) {
		return nil, alertf(AlertIllegalParameter, "server selected cipher suite %v, which was not offered", sh.cipherSuite)
	}
	if hs.didHRR && sh.cipherSuite != hs.suite {
		return nil, alertf(AlertIllegalParameter, "server changed the cipher suite after HelloRetryRequest")
	}
	return sh, nil
}

// processHelloRetryRequest answers a HelloRetryRequest with a second
// ClientHello (RFC 8446, 4.1.4): a key share for the group asked for,
// the cookie echoed, only PSKs of the selected suite's hash.
func (hs *clientHandshakeState) processHelloRetryRequest(hrr *serverHello) error {
	c, hello := hs.c, hs.hello
	hs.didHRR = true
	hs.suite = hrr.cipherSuite
	hs.hrr = hrr.raw
	if hrr.selectedGroup == 0 && hrr.cookie == nil {
		return alertf(AlertIllegalParameter, "HelloRetryRequest that would not change the ClientHello")
	}
	if g := hrr.selectedGroup; g != 0 {
		if !slices.Contains(hello.supportedGroups, g) {
			return alertf(AlertIllegalParameter, "HelloRetryRequest for group %v, which was not offered", g)
		}
		if slices.ContainsFunc(hs.keys, func(k groupKey) bool { return k.group == g }) {
			return alertf(AlertIllegalParameter, "HelloRetryRequest for group %v, which already had a key share", g)
		}
		key, share, err := newClientKey(g, c.config.rand())
		if err != nil {
			return err
		}
		hs.keys = []groupKey{{g, key}}
		hello.keyShares = []keyShare{{g, share}}
	}
	hello.cookie = hrr.cookie
	hello.earlyData = false
	// Offer only PSKs usable with the selected suite (RFC 8446, 4.1.4).
	hs.offered = slices.DeleteFunc(hs.offered, func(o offeredPSK) bool {
		if o.psk.Hash != hs.suite.Hash() {
			clear(o.early.secret)
			return true
		}
		return false
	})
	if len(hs.offered) == 0 {
		return alertf(AlertIllegalParameter, "HelloRetryRequest selected %v, which none of our PSKs can use", hs.suite)
	}
	prefix := func(h crypto.Hash) []byte {
		ch1 := h.New()
		ch1.Write(hs.ch1)
		return append(messageHash(ch1.Sum(nil)), hs.hrr...)
	}
	if err := hs.marshalWithBinders(prefix); err != nil {
		return err
	}
	return hs.writeHandshake(hello.raw)
}

// processServerHello checks the server's choices and derives the
// handshake traffic keys.
func (hs *clientHandshakeState) processServerHello(sh *serverHello) error {
	c := hs.c
	hs.suite = sh.cipherSuite
	if !sh.hasPSK {
		return alertf(AlertHandshakeFailure, "server did not accept any PSK (certificate authentication is not supported in PSK mode)")
	}
	if int(sh.selectedIdentity) >= len(hs.offered) {
		return alertf(AlertIllegalParameter, "server selected PSK identity %d of %d", sh.selectedIdentity, len(hs.offered))
	}
	hs.psk = hs.offered[sh.selectedIdentity]
	if hs.psk.psk.Hash != hs.suite.Hash() {
		return alertf(AlertIllegalParameter, "server selected a %v PSK with %v", hs.psk.psk.Hash, hs.suite)
	}

	var shared []byte
	if sh.keyShare.group == 0 {
		if !slices.Contains(c.config.pskModes(true), PSKModeKE) {
			return alertf(AlertMissingExtension, "server chose psk_ke, which was not offered")
		}
		hs.mode = PSKModeKE
	} else {
		if !slices.Contains(c.config.pskModes(true), PSKModeDHE) {
			return alertf(AlertIllegalParameter, "server sent a key share without psk_dhe_ke offered")
		}
		i := slices.IndexFunc(hs.keys, func(k groupKey) bool { return k.group == sh.keyShare.group })
		if i < 0 {
			return alertf(AlertIllegalParameter, "server key share for %v, which we sent no share for", sh.keyShare.group)
		}
		var err error
		if shared, err = hs.keys[i].key.finish(sh.keyShare.data); err != nil {
			return err
		}
		hs.mode, hs.group = PSKModeDHE, sh.keyShare.group
	}

	// Now the hash is known: build the transcript from the raw messages.
	hs.transcript = hs.suite.Hash().New()
	if hs.didHRR {
		h := hs.suite.Hash().New()
		h.Write(hs.ch1)
		hs.transcript.Write(messageHash(h.Sum(nil)))
		hs.transcript.Write(hs.hrr)
	}
	hs.transcript.Write(hs.hello.raw)
	hs.transcript.Write(sh.raw)

	hs.hsSecret = hs.psk.early.handshakeSecret(shared)
	clear(shared)
	hs.clientSecret = hs.hsSecret.clientTrafficSecret(hs.transcript)
	serverSecret := hs.hsSecret.serverTrafficSecret(hs.transcript)
	hs.c.config.logKeys(hs.hello.random, keyLogClientHandshake, hs.clientSecret, keyLogServerHandshake, serverSecret)
	if err := c.checkKeyChange(); err != nil {
		return err
	}
	return c.in.setTrafficSecret(hs.suite, serverSecret)
}

func (hs *clientHandshakeState) readEncryptedExtensions() error {
	c := hs.c
	msg, err := c.expectMessage(typeEncryptedExtensions, "EncryptedExtensions")
	if err != nil {
		return err
	}
	var ee encryptedExtensions
	if err := ee.unmarshal(msg); err != nil {
		return err
	}
	if ee.earlyData {
		return alertf(AlertUnsupportedExtension, "server accepted early data we did not offer")
	}
	if ee.serverNameAck && hs.hello.serverName == "" {
		return alertf(AlertUnsupportedExtension, "server acknowledged a server_name we did not send")
	}
	if ee.recordSizeLimit != 0 {
		if hs.hello.recordSizeLimit == 0 {
			return alertf(AlertUnsupportedExtension, "record_size_limit we did not offer")
		}
		c.maxOut = min(int(ee.recordSizeLimit)-1, maxPlaintext)
		c.session.PeerRecordSizeLimit = int(ee.recordSizeLimit)
	}
	hs.transcript.Write(msg)
	return nil
}

// readServerFinishedAndReply checks the server's Finished (in a PSK
// handshake nothing else comes), derives the application secrets, and
// sends our Finished.
func (hs *clientHandshakeState) readServerFinishedAndReply() error {
	c, h := hs.c, hs.suite.Hash()
	msg, err := c.readHandshakeLocked()
	if err != nil {
		return err
	}
	switch msg[0] {
	case typeFinished:
	case typeCertificateRequest, typeCertificate:
		return alertf(AlertUnexpectedMessage, "certificate message in a PSK handshake")
	default:
		return alertf(AlertUnexpectedMessage, "got handshake message %d, want Finished", msg[0])
	}
	if err := verifyFinished(msg, h, c.in.secret, hs.transcript, "server Finished does not verify (wrong PSK?)"); err != nil {
		return err
	}
	hs.transcript.Write(msg)

	ms := hs.hsSecret.masterSecret()
	defer ms.zero()
	clientApp := ms.clientTrafficSecret(hs.transcript)
	serverApp := ms.serverTrafficSecret(hs.transcript)
	hs.c.config.logKeys(hs.hello.random, keyLogClientTraffic, clientApp, keyLogServerTraffic, serverApp)
	if err := c.checkKeyChange(); err != nil {
		return err
	}
	if err := c.in.setTrafficSecret(hs.suite, serverApp); err != nil {
		return err
	}

	if err := c.out.setTrafficSecret(hs.suite, hs.clientSecret); err != nil {
		return err
	}
	hs.clientSecret = nil // now owned by c.out
	fin := marshalFinished(finishedMAC(h, c.out.secret, hs.transcript.Sum(nil)))
	if err := c.writeRecordLocked(recordTypeHandshake, fin); err != nil {
		return err
	}
	// Switch keys before flushing: the flight is already sealed.
	if err := c.out.setTrafficSecret(hs.suite, clientApp); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}

	c.session = Session{
		Suite:                hs.suite,
		Group:                hs.group,
		IsClient:             true,
		PSKIdentity:          hs.psk.psk.Identity,
		PSKIndex:             hs.psk.index,
		PSKMode:              hs.mode,
		Tag:                  hs.psk.psk.Tag,
		DidHelloRetryRequest: hs.didHRR,
		PeerRecordSizeLimit:  c.session.PeerRecordSizeLimit,
		ServerName:           hs.hello.serverName,
	}
	return nil
}
