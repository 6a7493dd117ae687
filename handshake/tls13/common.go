// Package tls13 is a TLS 1.3 (RFC 8446) engine for external pre-shared
// keys, the mode NVMe/TCP uses and Go's crypto/tls cannot do.
//
// It implements both roles for psk_ke and psk_dhe_ke with the three kTLS
// cipher suites, HelloRetryRequest, several offered identities, and a
// record layer that never reads past the record it needs, so that a socket
// can be handed to kernel TLS (kTLS) right after the handshake with every
// later byte still unread. It sends no NewSessionTicket and accepts no
// early data. A finished handshake yields a Session: the suite, the
// application traffic secrets and the next sequence numbers, which is all
// kTLS needs.
//
// The package uses only Go's cryptographic primitives and knows nothing of
// the daemon, keyrings or the kernel.
package tls13

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"
)

// VersionTLS13 is the TLS 1.3 protocol version on the wire.
const VersionTLS13 = 0x0304

// A CipherSuite is a TLS 1.3 cipher suite (RFC 8446, B.4).
type CipherSuite uint16

// The cipher suites kTLS can take over.
const (
	TLS_AES_128_GCM_SHA256       CipherSuite = 0x1301
	TLS_AES_256_GCM_SHA384       CipherSuite = 0x1302
	TLS_CHACHA20_POLY1305_SHA256 CipherSuite = 0x1303
)

// DefaultCipherSuites is the preference order when a Config names none:
// the suite NVMe/TCP requires first.
var DefaultCipherSuites = []CipherSuite{
	TLS_AES_128_GCM_SHA256,
	TLS_AES_256_GCM_SHA384,
	TLS_CHACHA20_POLY1305_SHA256,
}

var suiteNames = map[CipherSuite]string{
	TLS_AES_128_GCM_SHA256:       "TLS_AES_128_GCM_SHA256",
	TLS_AES_256_GCM_SHA384:       "TLS_AES_256_GCM_SHA384",
	TLS_CHACHA20_POLY1305_SHA256: "TLS_CHACHA20_POLY1305_SHA256",
}

func (s CipherSuite) String() string {
	if n, ok := suiteNames[s]; ok {
		return n
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(s))
}

// Supported reports whether the engine implements s.
func (s CipherSuite) Supported() bool {
	_, ok := suiteNames[s]
	return ok
}

// Hash is the suite's handshake hash; a PSK can only be used with suites
// of its own hash.
func (s CipherSuite) Hash() crypto.Hash {
	if s == TLS_AES_256_GCM_SHA384 {
		return crypto.SHA384
	}
	return crypto.SHA256
}

// KeyLen is the length of the suite's AEAD key in bytes.
func (s CipherSuite) KeyLen() int {
	if s == TLS_AES_128_GCM_SHA256 {
		return 16
	}
	return 32
}

// ParseCipherSuite accepts the RFC name of a suite, with or without the
// "TLS_" prefix, case-insensitively.
func ParseCipherSuite(name string) (CipherSuite, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "TLS_") {
		n = "TLS_" + n
	}
	for s, sn := range suiteNames {
		if sn == n {
			return s, nil
		}
	}
	return 0, fmt.Errorf("tls13: unknown cipher suite %q", name)
}

// A Group is a key exchange group (RFC 8446, 4.2.7).
type Group uint16

// The groups the engine implements. X25519MLKEM768 is the hybrid
// post-quantum group of draft-ietf-tls-ecdhe-mlkem (see hybrid.go for the
// NIST-curve hybrids); offer them explicitly.
const (
	P256           Group = 0x0017
	P384           Group = 0x0018
	X25519         Group = 0x001d
	FFDHE2048      Group = 0x0100
	FFDHE3072      Group = 0x0101
	X25519MLKEM768 Group = 0x11ec
)

// DefaultGroups is the preference order when a Config names none. The
// client sends a key share for the first only; the others are reachable
// through HelloRetryRequest.
var DefaultGroups = []Group{X25519, P256, P384, FFDHE3072, FFDHE2048}

var groupNames = map[Group]string{
	P256:           "secp256r1",
	P384:           "secp384r1",
	X25519:         "x25519",
	FFDHE2048:      "ffdhe2048",
	FFDHE3072:      "ffdhe3072",
	X25519MLKEM768: "X25519MLKEM768",
	// hybrid.go
	SecP256r1MLKEM768:  "SecP256r1MLKEM768",
	SecP384r1MLKEM1024: "SecP384r1MLKEM1024",
}

func (g Group) String() string {
	if n, ok := groupNames[g]; ok {
		return n
	}
	if g == 0 {
		return "none"
	}
	return fmt.Sprintf("Group(0x%04x)", uint16(g))
}

// Supported reports whether the engine implements g.
func (g Group) Supported() bool {
	_, ok := groupNames[g]
	return ok
}

// ParseGroup accepts the IANA name of a group case-insensitively, and the
// aliases P-256, P-384, prime256v1 and x25519mlkem768.
func ParseGroup(name string) (Group, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n {
	case "p-256", "p256", "prime256v1":
		return P256, nil
	case "p-384", "p384":
		return P384, nil
	}
	for g, gn := range groupNames {
		if strings.ToLower(gn) == n {
			return g, nil
		}
	}
	return 0, fmt.Errorf("tls13: unknown group %q", name)
}

// A PSKMode is a psk_key_exchange_modes value (RFC 8446, 4.2.9).
type PSKMode uint8

const (
	// PSKModeKE is psk_ke: the PSK alone, no forward secrecy.
	PSKModeKE PSKMode = 0
	// PSKModeDHE is psk_dhe_ke: the PSK plus an (EC)DHE exchange.
	PSKModeDHE PSKMode = 1
)

func (m PSKMode) String() string {
	switch m {
	case PSKModeKE:
		return "psk_ke"
	case PSKModeDHE:
		return "psk_dhe_ke"
	}
	return fmt.Sprintf("PSKMode(%d)", uint8(m))
}

// A TrafficSecret is the current application traffic secret of one
// direction and the sequence number of the next record protected by it.
type TrafficSecret struct {
	Secret []byte
	Seq    uint64
}

// A Session is what a finished handshake hands over: the negotiated
// parameters and, for each direction, the traffic secret and next
// sequence number. The x509 path (package stdtls) fills the same type, so
// kTLS installation and rekeying are shared.
type Session struct {
	Suite    CipherSuite
	Group    Group // 0 when no key exchange took place (psk_ke)
	IsClient bool

	// TX protects what this side sends, RX what it receives.
	TX, RX TrafficSecret

	// PSK handshakes: the identity used, its index (in Config.PSKs for
	// a client, in the client's offer for a server) and the mode.
	PSKIdentity []byte
	PSKIndex    int
	PSKMode     PSKMode
	// Tag is the chosen PSK's Tag, for the caller's bookkeeping.
	Tag any

	// DidHelloRetryRequest reports whether a HelloRetryRequest was used.
	DidHelloRetryRequest bool

	// PeerRecordSizeLimit is the peer's record_size_limit (RFC 8449),
	// 0 if it sent none.
	PeerRecordSizeLimit int

	// x509 handshakes.
	PeerCertificates [][]byte // DER, leaf first
	VerifiedChains   [][]*x509.Certificate
	ServerName       string
}

// Zero overwrites the secrets. Call it once the keys have been installed.
func (s *Session) Zero() {
	if s == nil {
		return
	}
	clear(s.TX.Secret)
	clear(s.RX.Secret)
}
