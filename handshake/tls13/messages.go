package tls13

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Handshake message types (RFC 8446, 4).
const (
	typeClientHello         uint8 = 1
	typeServerHello         uint8 = 2
	typeNewSessionTicket    uint8 = 4
	typeEndOfEarlyData      uint8 = 5
	typeEncryptedExtensions uint8 = 8
	typeCertificate         uint8 = 11
	typeCertificateRequest  uint8 = 13
	typeCertificateVerify   uint8 = 15
	typeFinished            uint8 = 20
	typeKeyUpdate           uint8 = 24
	typeMessageHash         uint8 = 254
)

// Extension numbers (RFC 8446, 4.2; RFC 8449).
const (
	extServerName          uint16 = 0
	extSupportedGroups     uint16 = 10
	extSignatureAlgorithms uint16 = 13
	extRecordSizeLimit     uint16 = 28
	extPreSharedKey        uint16 = 41
	extEarlyData           uint16 = 42
	extSupportedVersions   uint16 = 43
	extCookie              uint16 = 44
	extPadding             uint16 = 21
	extPSKModes            uint16 = 45
	extKeyShare            uint16 = 51
)

// maxIdentities bounds the identities a server parses and looks up, so a
// hostile ClientHello cannot make it search the keyring thousands of times.
const maxIdentities = 32

// helloRetryRequestRandom is the ServerHello.random that marks a
// HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446, 4.1.3).
var helloRetryRequestRandom = [32]byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11,
	0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E,
	0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

type keyShare struct {
	group Group
	data  []byte
}

type pskIdentity struct {
	identity []byte
	age      uint32 // obfuscated_ticket_age: 0 for external PSKs
}

// clientHello is a parsed or to-be-sent ClientHello. Slices of a parsed
// message alias the buffer it was parsed from.
type clientHello struct {
	raw                 []byte // the whole message, header included
	random              []byte
	sessionID           []byte
	cipherSuites        []CipherSuite
	compressionMethods  []byte
	serverName          string
	supportedGroups     []Group
	signatureAlgorithms []uint16
	supportedVersions   []uint16
	keyShares           []keyShare
	pskModes            []uint8
	cookie              []byte
	earlyData           bool
	recordSizeLimit     uint16 // 0 if absent
	pskIdentities       []pskIdentity
	pskBinders          [][]byte
	// bindersLen is the length of the binders list, its 2-byte length
	// included: what Truncate(ClientHello) cuts from the end of raw.
	bindersLen int
}

// Signature schemes a PSK client advertises anyway: some servers insist on
// the extension even when no certificate will be used.
var defaultSignatureAlgorithms = []uint16{
	0x0403, 0x0503, 0x0603, // ecdsa_secp{256,384,521}r1_sha{256,384,512}
	0x0804, 0x0805, 0x0806, // rsa_pss_rsae_sha{256,384,512}
	0x0807, // ed25519
}

// marshal encodes the ClientHello with zeroed binders of the right
// lengths; the caller patches them in with updateBinders. It fails,
// without panicking, when a field overflows its length prefix (a PSK
// identity list near 64 KiB, say).
func (m *clientHello) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8(typeClientHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303) // legacy_version
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, s := range m.cipherSuites {
				b.AddUint16(uint16(s))
			}
		})
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if m.serverName != "" {
				b.AddUint16(extServerName)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint8(0) // host_name
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
							b.AddBytes([]byte(m.serverName))
						})
					})
				})
			}
			if len(m.supportedVersions) > 0 {
				b.AddUint16(extSupportedVersions)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, v := range m.supportedVersions {
							b.AddUint16(v)
						}
					})
				})
			}
			if len(m.supportedGroups) > 0 {
				b.AddUint16(extSupportedGroups)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, g := range m.supportedGroups {
							b.AddUint16(uint16(g))
						}
					})
				})
			}
			if len(m.signatureAlgorithms) > 0 {
				b.AddUint16(extSignatureAlgorithms)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, s := range m.signatureAlgorithms {
							b.AddUint16(s)
						}
					})
				})
			}
			if m.keyShares != nil {
				b.AddUint16(extKeyShare)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, ks := range m.keyShares {
							b.AddUint16(uint16(ks.group))
							b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ks.data) })
						}
					})
				})
			}
			if m.cookie != nil {
				b.AddUint16(extCookie)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
				})
			}
			if m.recordSizeLimit != 0 {
				b.AddUint16(extRecordSizeLimit)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(m.recordSizeLimit) })
			}
			if m.earlyData {
				b.AddUint16(extEarlyData)
				b.AddUint16(0)
			}
			if len(m.pskModes) > 0 {
				b.AddUint16(extPSKModes)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.pskModes) })
				})
			}
			if len(m.pskIdentities) > 0 { // must be last (RFC 8446, 4.2.11)
				b.AddUint16(extPreSharedKey)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, id := range m.pskIdentities {
							b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(id.identity) })
							b.AddUint32(id.age)
						}
					})
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, binder := range m.pskBinders {
							b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(binder) })
						}
					})
				})
			}
		})
	})
	raw, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("tls13: ClientHello does not fit its length fields: %w", err)
	}
	m.bindersLen = 0
	if len(m.pskIdentities) > 0 {
		m.bindersLen = 2
		for _, binder := range m.pskBinders {
			m.bindersLen += 1 + len(binder)
		}
	}
	m.raw = raw
	return raw, nil
}

// truncated is Truncate(ClientHello): the message without its binders
// list, which is what binders are computed over (RFC 8446, 4.2.11.2).
func (m *clientHello) truncated() []byte {
	return m.raw[:len(m.raw)-m.bindersLen]
}

// updateBinders writes binders (of the lengths marshal used) into raw.
func (m *clientHello) updateBinders(binders [][]byte) {
	off := len(m.raw) - m.bindersLen + 2
	for i, binder := range binders {
		if len(binder) != len(m.pskBinders[i]) {
			panic("tls13: binder length changed")
		}
		off++
		copy(m.raw[off:], binder)
		off += len(binder)
	}
	m.pskBinders = binders
}

// unmarshal parses a whole ClientHello message. It is strict where RFC
// 8446 requires it (no duplicate extensions, pre_shared_key last, every
// extension body consumed) and skips extensions it does not know. Errors
// are *AlertError: decode_error for malformed bytes, or the alert a
// semantic error the decoder can see calls for.
func (m *clientHello) unmarshal(data []byte) (err error) {
	*m = clientHello{raw: data}
	s := cryptobyte.String(data)
	var msgType uint8
	var body cryptobyte.String
	var legacyVersion uint16
	var sessionID, suites, compression cryptobyte.String
	if !s.ReadUint8(&msgType) || msgType != typeClientHello ||
		!s.ReadUint24LengthPrefixed(&body) || !s.Empty() ||
		!body.ReadUint16(&legacyVersion) ||
		!body.ReadBytes(&m.random, 32) ||
		!body.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 ||
		!body.ReadUint16LengthPrefixed(&suites) || len(suites) == 0 || len(suites)%2 != 0 ||
		!body.ReadUint8LengthPrefixed(&compression) || len(compression) == 0 {
		return errDecode("ClientHello")
	}
	m.sessionID = sessionID
	m.compressionMethods = compression
	for !suites.Empty() {
		var cs uint16
		suites.ReadUint16(&cs)
		m.cipherSuites = append(m.cipherSuites, CipherSuite(cs))
	}
	if body.Empty() {
		// No extensions: a pre-TLS 1.3 client.
		return nil
	}
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode("ClientHello")
	}
	var seen extSet
	for !exts.Empty() {
		var ext uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode("ClientHello extensions")
		}
		if !seen.add(ext) {
			return alertf(AlertIllegalParameter, "duplicate extension %d in ClientHello", ext)
		}
		if m.pskIdentities != nil {
			return alertf(AlertIllegalParameter, "pre_shared_key is not the last extension")
		}
		switch ext {
		case extServerName:
			var list cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&list) || list.Empty() {
				return errDecode("server_name")
			}
			for !list.Empty() {
				var nameType uint8
				var name cryptobyte.String
				if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
					return errDecode("server_name")
				}
				if nameType == 0 && m.serverName == "" {
					m.serverName = string(name)
				}
			}
		case extSupportedGroups:
			var list cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 {
				return errDecode("supported_groups")
			}
			for !list.Empty() {
				var g uint16
				list.ReadUint16(&g)
				m.supportedGroups = append(m.supportedGroups, Group(g))
			}
		case extSignatureAlgorithms:
			var list cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 {
				return errDecode("signature_algorithms")
			}
			for !list.Empty() {
				var a uint16
				list.ReadUint16(&a)
				m.signatureAlgorithms = append(m.signatureAlgorithms, a)
			}
		case extSupportedVersions:
			var list cryptobyte.String
			if !e.ReadUint8LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 {
				return errDecode("supported_versions")
			}
			for !list.Empty() {
				var v uint16
				list.ReadUint16(&v)
				m.supportedVersions = append(m.supportedVersions, v)
			}
		case extKeyShare:
			var list cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&list) {
				return errDecode("key_share")
			}
			m.keyShares = []keyShare{}
			for !list.Empty() {
				var g uint16
				var data cryptobyte.String
				if !list.ReadUint16(&g) || !list.ReadUint16LengthPrefixed(&data) || data.Empty() {
					return errDecode("key_share")
				}
				for _, ks := range m.keyShares {
					if ks.group == Group(g) {
						return alertf(AlertIllegalParameter, "two key shares for %v", Group(g))
					}
				}
				m.keyShares = append(m.keyShares, keyShare{Group(g), data})
			}
		case extCookie:
			var c cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&c) || c.Empty() {
				return errDecode("cookie")
			}
			m.cookie = c
		case extRecordSizeLimit:
			if !e.ReadUint16(&m.recordSizeLimit) {
				return errDecode("record_size_limit")
			}
			if m.recordSizeLimit < 64 {
				return alertf(AlertIllegalParameter, "record_size_limit %d below 64", m.recordSizeLimit)
			}
		case extEarlyData:
			m.earlyData = true
		case extPSKModes:
			var modes cryptobyte.String
			if !e.ReadUint8LengthPrefixed(&modes) || modes.Empty() {
				return errDecode("psk_key_exchange_modes")
			}
			m.pskModes = modes
		case extPreSharedKey:
			// The binders list is at the end of the message, since this
			// extension is last; remember its length for Truncate.
			var ids, binders cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&ids) || ids.Empty() {
				return errDecode("pre_shared_key")
			}
			for !ids.Empty() {
				var id cryptobyte.String
				var age uint32
				if !ids.ReadUint16LengthPrefixed(&id) || id.Empty() || !ids.ReadUint32(&age) {
					return errDecode("pre_shared_key identities")
				}
				m.pskIdentities = append(m.pskIdentities, pskIdentity{id, age})
			}
			m.bindersLen = len(e)
			if !e.ReadUint16LengthPrefixed(&binders) || binders.Empty() {
				return errDecode("pre_shared_key binders")
			}
			for !binders.Empty() {
				var binder cryptobyte.String
				if !binders.ReadUint8LengthPrefixed(&binder) || len(binder) < 32 {
					return errDecode("pre_shared_key binder")
				}
				m.pskBinders = append(m.pskBinders, binder)
			}
			if len(m.pskBinders) != len(m.pskIdentities) {
				return alertf(AlertIllegalParameter, "%d PSK identities but %d binders",
					len(m.pskIdentities), len(m.pskBinders))
			}
		default:
			continue // unknown extensions are ignored (RFC 8446, 4.2)
		}
		if !e.Empty() {
			return errDecode("ClientHello extension body")
		}
	}
	return nil
}

// extensionIter walks the extensions of a ClientHello that unmarshal
// accepted.
type extensionIter struct{ exts cryptobyte.String }

// helloExtensions returns an iterator over the extensions of raw, a
// whole ClientHello that unmarshal accepted (empty if it has none).
func helloExtensions(raw []byte) extensionIter {
	s := cryptobyte.String(raw)
	var body, skip, exts cryptobyte.String
	if !s.Skip(1) || !s.ReadUint24LengthPrefixed(&body) || !body.Skip(2+32) ||
		!body.ReadUint8LengthPrefixed(&skip) || !body.ReadUint16LengthPrefixed(&skip) ||
		!body.ReadUint8LengthPrefixed(&skip) || !body.ReadUint16LengthPrefixed(&exts) {
		return extensionIter{}
	}
	return extensionIter{exts}
}

// nextRetained returns the next extension a second ClientHello must
// repeat unchanged: not key_share, cookie, early_data, padding or
// pre_shared_key (RFC 8446, 4.1.2).
func (it *extensionIter) nextRetained() (uint16, []byte, bool) {
	for !it.exts.Empty() {
		var typ uint16
		var body cryptobyte.String
		if !it.exts.ReadUint16(&typ) || !it.exts.ReadUint16LengthPrefixed(&body) {
			return 0, nil, false
		}
		switch typ {
		case extKeyShare, extCookie, extEarlyData, extPadding, extPreSharedKey:
			continue
		}
		return typ, body, true
	}
	return 0, nil, false
}

// serverHello is a ServerHello or, with isHRR, a HelloRetryRequest.
type serverHello struct {
	raw              []byte
	random           []byte
	sessionID        []byte
	cipherSuite      CipherSuite
	compression      uint8
	supportedVersion uint16
	keyShare         keyShare // ServerHello: the server's share
	selectedGroup    Group    // HelloRetryRequest: the group to retry with
	hasPSK           bool
	selectedIdentity uint16
	cookie           []byte
}

func (m *serverHello) isHRR() bool {
	return string(m.random) == string(helloRetryRequestRandom[:])
}

// marshal encodes a ServerHello or HelloRetryRequest; see
// clientHello.marshal for the error.
func (m *serverHello) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8(typeServerHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16(uint16(m.cipherSuite))
		b.AddUint8(m.compression)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(extSupportedVersions)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(m.supportedVersion) })
			if m.selectedGroup != 0 {
				b.AddUint16(extKeyShare)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(uint16(m.selectedGroup)) })
			}
			if m.keyShare.group != 0 {
				b.AddUint16(extKeyShare)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16(uint16(m.keyShare.group))
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.keyShare.data) })
				})
			}
			if m.cookie != nil {
				b.AddUint16(extCookie)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
				})
			}
			if m.hasPSK {
				b.AddUint16(extPreSharedKey)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(m.selectedIdentity) })
			}
		})
	})
	raw, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("tls13: handshake message does not fit its length fields: %w", err)
	}
	m.raw = raw
	return raw, nil
}

// unmarshal parses a ServerHello or HelloRetryRequest. The key_share
// extension has a different body in each, so the random is read first.
func (m *serverHello) unmarshal(data []byte) error {
	*m = serverHello{raw: data}
	s := cryptobyte.String(data)
	var msgType uint8
	var body, sessionID, exts cryptobyte.String
	var legacyVersion, suite uint16
	if !s.ReadUint8(&msgType) || msgType != typeServerHello ||
		!s.ReadUint24LengthPrefixed(&body) || !s.Empty() ||
		!body.ReadUint16(&legacyVersion) ||
		!body.ReadBytes(&m.random, 32) ||
		!body.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 ||
		!body.ReadUint16(&suite) ||
		!body.ReadUint8(&m.compression) {
		return errDecode("ServerHello")
	}
	m.sessionID = sessionID
	m.cipherSuite = CipherSuite(suite)
	if body.Empty() {
		return nil // no extensions: not TLS 1.3; the caller rejects it
	}
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode("ServerHello")
	}
	hrr := m.isHRR()
	var seen extSet
	for !exts.Empty() {
		var ext uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode("ServerHello extensions")
		}
		if !seen.add(ext) {
			return alertf(AlertIllegalParameter, "duplicate extension %d in ServerHello", ext)
		}
		switch {
		case ext == extSupportedVersions:
			if !e.ReadUint16(&m.supportedVersion) {
				return errDecode("supported_versions")
			}
		case ext == extKeyShare && hrr:
			var g uint16
			if !e.ReadUint16(&g) {
				return errDecode("key_share")
			}
			if g == 0 {
				return alertf(AlertIllegalParameter, "HelloRetryRequest for group 0")
			}
			m.selectedGroup = Group(g)
		case ext == extKeyShare:
			var g uint16
			var d cryptobyte.String
			if !e.ReadUint16(&g) || !e.ReadUint16LengthPrefixed(&d) || d.Empty() {
				return errDecode("key_share")
			}
			if g == 0 {
				return alertf(AlertIllegalParameter, "key share for group 0")
			}
			m.keyShare = keyShare{Group(g), d}
		case ext == extCookie && hrr:
			var c cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&c) || c.Empty() {
				return errDecode("cookie")
			}
			m.cookie = c
		case ext == extPreSharedKey && !hrr:
			m.hasPSK = true
			if !e.ReadUint16(&m.selectedIdentity) {
				return errDecode("pre_shared_key")
			}
		default:
			// A server may only send extensions the client offered, and
			// these are all we offer in a ServerHello.
			return alertf(AlertUnsupportedExtension, "unexpected extension %d in ServerHello", ext)
		}
		if !e.Empty() {
			return errDecode("ServerHello extension body")
		}
	}
	return nil
}

// encryptedExtensions carries what the client may learn only under
// encryption; for a PSK handshake that is little.
type encryptedExtensions struct {
	raw             []byte
	recordSizeLimit uint16
	serverNameAck   bool
	earlyData       bool
}

func (m *encryptedExtensions) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8(typeEncryptedExtensions)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if m.serverNameAck {
				b.AddUint16(extServerName)
				b.AddUint16(0)
			}
			if m.recordSizeLimit != 0 {
				b.AddUint16(extRecordSizeLimit)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(m.recordSizeLimit) })
			}
		})
	})
	raw, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("tls13: handshake message does not fit its length fields: %w", err)
	}
	m.raw = raw
	return raw, nil
}

func (m *encryptedExtensions) unmarshal(data []byte) error {
	*m = encryptedExtensions{raw: data}
	s := cryptobyte.String(data)
	var msgType uint8
	var body, exts cryptobyte.String
	if !s.ReadUint8(&msgType) || msgType != typeEncryptedExtensions ||
		!s.ReadUint24LengthPrefixed(&body) || !s.Empty() ||
		!body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode("EncryptedExtensions")
	}
	var seen extSet
	for !exts.Empty() {
		var ext uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode("EncryptedExtensions")
		}
		if !seen.add(ext) {
			return alertf(AlertIllegalParameter, "duplicate extension %d in EncryptedExtensions", ext)
		}
		switch ext {
		case extServerName:
			m.serverNameAck = true
		case extRecordSizeLimit:
			if !e.ReadUint16(&m.recordSizeLimit) {
				return errDecode("record_size_limit")
			}
			if m.recordSizeLimit < 64 {
				return alertf(AlertIllegalParameter, "record_size_limit %d below 64", m.recordSizeLimit)
			}
		case extSupportedGroups:
			// The server's preference, for later connections; allowed
			// and of no use to us.
			e.Skip(len(e))
		case extEarlyData:
			m.earlyData = true
		case extKeyShare, extPreSharedKey, extSupportedVersions, extPSKModes,
			extCookie, extSignatureAlgorithms:
			return alertf(AlertIllegalParameter, "extension %d not allowed in EncryptedExtensions", ext)
		default:
			return alertf(AlertUnsupportedExtension, "unexpected extension %d in EncryptedExtensions", ext)
		}
		if !e.Empty() {
			return errDecode("EncryptedExtensions extension body")
		}
	}
	return nil
}

// marshalFinished encodes a Finished message.
func marshalFinished(verifyData []byte) []byte {
	out := make([]byte, 4+len(verifyData))
	out[0] = typeFinished
	out[1], out[2], out[3] = 0, byte(len(verifyData)>>8), byte(len(verifyData))
	copy(out[4:], verifyData)
	return out
}

// unmarshalFinished returns the verify_data of a Finished message.
func unmarshalFinished(data []byte, size int) ([]byte, error) {
	if len(data) != 4+size || data[0] != typeFinished || msgLen(data) != size {
		return nil, errDecode("Finished")
	}
	return data[4:], nil
}

// KeyUpdate request values (RFC 8446, 4.6.3).
const (
	keyUpdateNotRequested uint8 = 0
	keyUpdateRequested    uint8 = 1
)

func marshalKeyUpdate(request uint8) []byte {
	return []byte{typeKeyUpdate, 0, 0, 1, request}
}

func unmarshalKeyUpdate(data []byte) (uint8, error) {
	if len(data) != 5 || data[0] != typeKeyUpdate || data[1] != 0 || data[2] != 0 || data[3] != 1 {
		return 0, errDecode("KeyUpdate")
	}
	if data[4] > keyUpdateRequested {
		return 0, alertf(AlertIllegalParameter, "KeyUpdate request_update %d", data[4])
	}
	return data[4], nil
}

// messageHash is the synthetic message that replaces ClientHello1 in the
// transcript after a HelloRetryRequest (RFC 8446, 4.4.1).
func messageHash(hashOfCH1 []byte) []byte {
	out := make([]byte, 4+len(hashOfCH1))
	out[0] = typeMessageHash
	out[3] = byte(len(hashOfCH1))
	copy(out[4:], hashOfCH1)
	return out
}

// extSet records extension numbers seen in one message. The common ones
// fit in a bitmap; others go to a short list.
type extSet struct {
	low   [1]uint64
	other []uint16
}

func (s *extSet) add(ext uint16) bool {
	if ext < 64 {
		bit := uint64(1) << ext
		if s.low[0]&bit != 0 {
			return false
		}
		s.low[0] |= bit
		return true
	}
	for _, o := range s.other {
		if o == ext {
			return false
		}
	}
	s.other = append(s.other, ext)
	return true
}

func errDecode(what string) error {
	return alertf(AlertDecodeError, "malformed %s", what)
}
