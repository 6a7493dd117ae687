// Package tlsrecord is what every part of tlshd-go that touches TLS 1.3
// records shares: the content types, the size limits, and record
// protection (RFC 8446, 5). The PSK engine (tls13) seals and opens with
// it, the x509 path (stdtls) opens with it to read a peer's alert after
// crypto/tls has handed over, and the kTLS and rekey packages name record
// types with it. It imports nothing of tlshd-go, so any package can use
// it without an import cycle.
package tlsrecord

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Content types (RFC 8446, 5.1).
const (
	TypeChangeCipherSpec uint8 = 20
	TypeAlert            uint8 = 21
	TypeHandshake        uint8 = 22
	TypeApplicationData  uint8 = 23
)

// Sizes (RFC 8446, 5.1, 5.2).
const (
	HeaderLen     = 5
	MaxPlaintext  = 1 << 14            // TLSPlaintext.length, and content in TLSInnerPlaintext
	MaxCiphertext = MaxPlaintext + 256 // TLSCiphertext.length
	TagLen        = 16                 // of every TLS 1.3 AEAD
)

// Errors of Open; the caller chooses the alert (bad_record_mac,
// unexpected_message, record_overflow).
var (
	ErrDecrypt       = errors.New("tlsrecord: record failed to decrypt")
	ErrNoContentType = errors.New("tlsrecord: record with no content type")
	ErrOverflow      = errors.New("tlsrecord: inner plaintext longer than 2^14+1 bytes")
)

// TLS 1.3 cipher suite numbers (RFC 8446, B.4), the ones kTLS can take.
const (
	suiteAES128GCM uint16 = 0x1301
	suiteAES256GCM uint16 = 0x1302
	suiteChaCha20  uint16 = 0x1303
)

// A Protection is one direction's record protection: the AEAD keyed for
// one traffic secret and its write IV. The caller keeps the sequence
// number, which a key change resets. The zero value is unusable until
// Init.
type Protection struct {
	aead  cipher.AEAD
	iv    [12]byte
	nonce [12]byte
}

// Init keys p for cipher suite suite with key and the 12-byte iv
// (RFC 8446, 7.3).
func (p *Protection) Init(suite uint16, key, iv []byte) error {
	if len(iv) != len(p.iv) {
		return fmt.Errorf("tlsrecord: IV of %d bytes", len(iv))
	}
	var aead cipher.AEAD
	var err error
	switch suite {
	case suiteAES128GCM, suiteAES256GCM:
		var block cipher.Block
		if block, err = aes.NewCipher(key); err == nil {
			aead, err = cipher.NewGCM(block)
		}
	case suiteChaCha20:
		aead, err = chacha20poly1305.New(key)
	default:
		err = fmt.Errorf("tlsrecord: unsupported cipher suite 0x%04x", suite)
	}
	if err != nil {
		return err
	}
	p.aead = aead
	copy(p.iv[:], iv)
	return nil
}

// Ready reports whether Init has keyed p (and Zero not since undone it).
func (p *Protection) Ready() bool { return p.aead != nil }

// Zero forgets the keys. Go cannot clear the AEAD's expanded key
// schedule; dropping it leaves that to the garbage collector.
func (p *Protection) Zero() {
	clear(p.iv[:])
	clear(p.nonce[:])
	p.aead = nil
}

// nonce is the per-record nonce: the IV XORed with the 64-bit sequence
// number, left-padded (RFC 8446, 5.3).
func (p *Protection) makeNonce(seq uint64) []byte {
	p.nonce = p.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	for i := range s {
		p.nonce[4+i] ^= s[i]
	}
	return p.nonce[:]
}

// Seal appends to out one TLSCiphertext record carrying data of content
// type typ followed by padding zero bytes, protected for sequence number
// seq. The caller bounds len(data)+1+padding by MaxPlaintext+1.
func (p *Protection) Seal(out []byte, seq uint64, typ uint8, data []byte, padding int) []byte {
	n := len(data) + 1 + padding + TagLen
	out = append(out, TypeApplicationData, 3, 3, byte(n>>8), byte(n))
	hdr := len(out)
	out = append(out, data...)
	out = append(out, typ)
	for range padding {
		out = append(out, 0)
	}
	return p.aead.Seal(out[:hdr], p.makeNonce(seq), out[hdr:], out[hdr-HeaderLen:hdr])
}

// Open decrypts a record's body in place. hdr is its 5-byte header. It
// returns the inner content type and the content without padding, and
// refuses an inner plaintext (content, type and padding) longer than
// 2^14+1 bytes.
func (p *Protection) Open(seq uint64, hdr, body []byte) (uint8, []byte, error) {
	if len(body) < TagLen+1 {
		return 0, nil, ErrDecrypt
	}
	plain, err := p.aead.Open(body[:0], p.makeNonce(seq), body, hdr)
	if err != nil {
		return 0, nil, ErrDecrypt
	}
	if len(plain) > MaxPlaintext+1 {
		return 0, nil, ErrOverflow
	}
	// The last non-zero byte is the real content type.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, ErrNoContentType
	}
	return plain[i], plain[:i], nil
}
