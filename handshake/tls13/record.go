package tls13

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record content types (RFC 8446, 5.1).
const (
	recordTypeChangeCipherSpec uint8 = 20
	recordTypeAlert            uint8 = 21
	recordTypeHandshake        uint8 = 22
	recordTypeApplicationData  uint8 = 23
)

const (
	recordHeaderLen = 5
	maxPlaintext    = 1 << 14            // TLSPlaintext.length limit
	maxCiphertext   = maxPlaintext + 256 // TLSCiphertext.length limit (RFC 8446, 5.2)
	aeadTagLen      = 16
)

// A halfConn is one direction of the record layer: the traffic secret
// in use and the sequence number of the next record. Before any secret is
// set, records are plaintext. The AEAD is built on first use, so a
// connection handed to kTLS never expands keys it will not use.
type halfConn struct {
	suite  CipherSuite
	secret []byte
	seq    uint64
	aead   cipher.AEAD // nil until first use
	iv     [12]byte
	nonce  [12]byte
}

// keyed reports whether records in this direction are protected.
func (hc *halfConn) keyed() bool { return hc.secret != nil }

// setTrafficSecret switches to keys derived from secret and resets the
// sequence number, as every key change in TLS 1.3 does (RFC 8446, 5.3).
// It takes ownership of secret and zeroes the previous one.
func (hc *halfConn) setTrafficSecret(suite CipherSuite, secret []byte) error {
	if !suite.Supported() {
		return errors.New("tls13: unsupported cipher suite " + suite.String())
	}
	clear(hc.secret)
	hc.suite, hc.secret, hc.seq, hc.aead = suite, secret, 0, nil
	return nil
}

// cipher returns the AEAD for the current secret, deriving it once.
func (hc *halfConn) cipher() (cipher.AEAD, error) {
	if hc.aead != nil {
		return hc.aead, nil
	}
	key, iv := TrafficKey(hc.suite, hc.secret)
	defer clear(key)
	defer clear(iv)
	aead, err := newAEAD(hc.suite, key)
	if err != nil {
		return nil, err
	}
	hc.aead = aead
	copy(hc.iv[:], iv)
	return aead, nil
}

// zero forgets the keys; the halfConn can no longer protect records.
func (hc *halfConn) zero() {
	clear(hc.secret)
	clear(hc.iv[:])
	hc.secret, hc.aead = nil, nil
}

func newAEAD(suite CipherSuite, key []byte) (cipher.AEAD, error) {
	switch suite {
	case TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384:
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(block)
	case TLS_CHACHA20_POLY1305_SHA256:
		return chacha20poly1305.New(key)
	}
	return nil, errors.New("tls13: unsupported cipher suite " + suite.String())
}

// makeNonce is the per-record nonce: the write IV XORed with the 64-bit
// sequence number, left-padded (RFC 8446, 5.3).
func (hc *halfConn) makeNonce() []byte {
	hc.nonce = hc.iv
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], hc.seq)
	for i := range seq {
		hc.nonce[4+i] ^= seq[i]
	}
	return hc.nonce[:]
}

var errSeqOverflow = errors.New("tls13: sequence number exhausted; the keys must be updated")

// seal appends one record carrying data of content type typ to out: in
// the clear without keys, else as TLSCiphertext with padding zero bytes.
func (hc *halfConn) seal(out []byte, typ uint8, data []byte, padding int) ([]byte, error) {
	if !hc.keyed() {
		out = append(out, typ, 3, 3, byte(len(data)>>8), byte(len(data)))
		return append(out, data...), nil
	}
	if hc.seq == ^uint64(0) {
		return out, errSeqOverflow
	}
	aead, err := hc.cipher()
	if err != nil {
		return out, err
	}
	n := len(data) + 1 + padding + aeadTagLen
	out = append(out, recordTypeApplicationData, 3, 3, byte(n>>8), byte(n))
	hdr := len(out)
	out = append(out, data...)
	out = append(out, typ)
	for range padding {
		out = append(out, 0)
	}
	out = aead.Seal(out[:hdr], hc.makeNonce(), out[hdr:], out[hdr-recordHeaderLen:hdr])
	hc.seq++
	return out, nil
}

// open decrypts one record in place. hdr is its 5-byte header, payload
// its body. It returns the inner content type and content, the padding
// stripped (RFC 8446, 5.2, 5.4).
func (hc *halfConn) open(hdr, payload []byte) (uint8, []byte, error) {
	if hc.seq == ^uint64(0) {
		return 0, nil, errSeqOverflow
	}
	if len(payload) < aeadTagLen+1 {
		return 0, nil, alertf(AlertBadRecordMAC, "record too short to decrypt")
	}
	aead, err := hc.cipher()
	if err != nil {
		return 0, nil, err
	}
	plain, err := aead.Open(payload[:0], hc.makeNonce(), payload, hdr)
	if err != nil {
		return 0, nil, alertf(AlertBadRecordMAC, "record failed to decrypt")
	}
	hc.seq++
	// TLSInnerPlaintext (content, type, padding) may not exceed 2^14+1
	// bytes, padding included (RFC 8446, 5.2, 5.4).
	if len(plain) > maxPlaintext+1 {
		return 0, nil, alertf(AlertRecordOverflow, "decrypted record of %d bytes", len(plain))
	}
	// Strip the zero padding; the last non-zero byte is the real type.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, alertf(AlertUnexpectedMessage, "record with no content type")
	}
	return plain[i], plain[:i], nil
}
