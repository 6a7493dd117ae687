package tls13

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"hash"

	_ "crypto/sha256" // register SHA-256 for crypto.Hash.New
	_ "crypto/sha512" // register SHA-384
)

// The key schedule of RFC 8446, 7.1, as typed stages: each stage derives
// only its own secrets and the next stage, so secrets are used in the
// order the RFC draws them.
//
//	            0
//	            |
//	            v
//	  PSK ->  HKDF-Extract = Early Secret
//	            |
//	            +-----> Derive-Secret(., "ext binder", "") = binder_key
//	            |
//	            v
//	      Derive-Secret(., "derived", "")
//	            |
//	            v
//	(EC)DHE -> HKDF-Extract = Handshake Secret
//	            |
//	            +-----> Derive-Secret(., "c hs traffic", ClientHello...ServerHello)
//	            +-----> Derive-Secret(., "s hs traffic", ClientHello...ServerHello)
//	            v
//	      Derive-Secret(., "derived", "")
//	            |
//	            v
//	  0 -> HKDF-Extract = Master Secret
//	            |
//	            +-----> Derive-Secret(., "c ap traffic", ClientHello...server Finished)
//	            +-----> Derive-Secret(., "s ap traffic", ClientHello...server Finished)
//	            +-----> Derive-Secret(., "exp master", ClientHello...server Finished)

// ExpandLabel is HKDF-Expand-Label (RFC 8446, 7.1).
func ExpandLabel(h crypto.Hash, secret []byte, label string, context []byte, length int) []byte {
	// HkdfLabel: uint16 length, opaque label<7..255> ("tls13 " + label),
	// opaque context<0..255>.
	var buf [2 + 1 + 6 + 255 + 1 + 255]byte
	b := buf[:0]
	b = append(b, byte(length>>8), byte(length), byte(6+len(label)))
	b = append(b, "tls13 "...)
	b = append(b, label...)
	b = append(b, byte(len(context)))
	b = append(b, context...)
	out, err := hkdf.Expand(h.New, secret, string(b), length)
	if err != nil {
		// Only for lengths above 255 hash lengths, which no caller asks.
		panic("tls13: HKDF-Expand-Label: " + err.Error())
	}
	return out
}

func extract(h crypto.Hash, secret, salt []byte) []byte {
	if secret == nil {
		secret = make([]byte, h.Size())
	}
	prk, err := hkdf.Extract(h.New, secret, salt)
	if err != nil {
		panic("tls13: HKDF-Extract: " + err.Error())
	}
	return prk
}

// deriveSecret is Derive-Secret with the transcript hash already computed.
func deriveSecret(h crypto.Hash, secret []byte, label string, transcriptHash []byte) []byte {
	return ExpandLabel(h, secret, label, transcriptHash, h.Size())
}

var (
	emptySHA256 = crypto.SHA256.New().Sum(nil)
	emptySHA384 = crypto.SHA384.New().Sum(nil)
)

func emptyHash(h crypto.Hash) []byte {
	if h == crypto.SHA384 {
		return emptySHA384
	}
	return emptySHA256
}

// earlySecret is the first stage, keyed by the PSK.
type earlySecret struct {
	hash   crypto.Hash
	secret []byte
}

func newEarlySecret(h crypto.Hash, psk []byte) *earlySecret {
	return &earlySecret{hash: h, secret: extract(h, psk, nil)}
}

// binderKey is the key for external PSK binders ("ext binder"; resumption
// PSKs use "res binder").
func (e *earlySecret) binderKey() []byte {
	return e.binderKeyLabel("ext binder")
}

// binderKeyLabel exists for the RFC 8448 vectors, which use resumption.
func (e *earlySecret) binderKeyLabel(label string) []byte {
	return deriveSecret(e.hash, e.secret, label, emptyHash(e.hash))
}

// handshakeSecret mixes in the (EC)DHE shared secret, nil for psk_ke, and
// zeroes this stage.
func (e *earlySecret) handshakeSecret(shared []byte) *handshakeSecret {
	derived := deriveSecret(e.hash, e.secret, "derived", emptyHash(e.hash))
	hs := &handshakeSecret{hash: e.hash, secret: extract(e.hash, shared, derived)}
	clear(derived)
	clear(e.secret)
	return hs
}

type handshakeSecret struct {
	hash   crypto.Hash
	secret []byte
}

func (h *handshakeSecret) clientTrafficSecret(transcript hash.Hash) []byte {
	return deriveSecret(h.hash, h.secret, "c hs traffic", transcript.Sum(nil))
}

func (h *handshakeSecret) serverTrafficSecret(transcript hash.Hash) []byte {
	return deriveSecret(h.hash, h.secret, "s hs traffic", transcript.Sum(nil))
}

// masterSecret moves to the last stage and zeroes this one.
func (h *handshakeSecret) masterSecret() *masterSecret {
	derived := deriveSecret(h.hash, h.secret, "derived", emptyHash(h.hash))
	ms := &masterSecret{hash: h.hash, secret: extract(h.hash, nil, derived)}
	clear(derived)
	clear(h.secret)
	return ms
}

type masterSecret struct {
	hash   crypto.Hash
	secret []byte
}

func (m *masterSecret) clientTrafficSecret(transcript hash.Hash) []byte {
	return deriveSecret(m.hash, m.secret, "c ap traffic", transcript.Sum(nil))
}

func (m *masterSecret) serverTrafficSecret(transcript hash.Hash) []byte {
	return deriveSecret(m.hash, m.secret, "s ap traffic", transcript.Sum(nil))
}

func (m *masterSecret) zero() { clear(m.secret) }

// finishedMAC is the verify_data of a Finished message, or a PSK binder
// when secret is the binder key (RFC 8446, 4.4.4 and 4.2.11.2).
func finishedMAC(h crypto.Hash, secret []byte, transcriptHash []byte) []byte {
	key := ExpandLabel(h, secret, "finished", nil, h.Size())
	mac := hmac.New(h.New, key)
	mac.Write(transcriptHash)
	clear(key)
	return mac.Sum(nil)
}

// verifyFinished checks a Finished message against the peer's handshake
// traffic secret and the transcript up to it, in constant time.
func verifyFinished(msg []byte, h crypto.Hash, secret []byte, transcript hash.Hash, failure string) error {
	verifyData, err := unmarshalFinished(msg, h.Size())
	if err != nil {
		return err
	}
	if !hmac.Equal(verifyData, finishedMAC(h, secret, transcript.Sum(nil))) {
		return alertf(AlertDecryptError, "%s", failure)
	}
	return nil
}

// TrafficKey derives the AEAD key and the 12-byte write IV from a traffic
// secret (RFC 8446, 7.3). For the AES-GCM suites kTLS wants the IV split
// into a 4-byte salt and an 8-byte explicit part; that split is the
// installer's business.
func TrafficKey(suite CipherSuite, secret []byte) (key, iv []byte) {
	h := suite.Hash()
	key = ExpandLabel(h, secret, "key", nil, suite.KeyLen())
	iv = ExpandLabel(h, secret, "iv", nil, 12)
	return key, iv
}

// NextTrafficSecret is the secret that follows secret after a KeyUpdate
// (RFC 8446, 7.2).
func NextTrafficSecret(suite CipherSuite, secret []byte) []byte {
	h := suite.Hash()
	return ExpandLabel(h, secret, "traffic upd", nil, h.Size())
}
