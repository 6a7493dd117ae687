package stdtls

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"golang.org/x/crypto/chacha20poly1305"
)

// newAEAD returns the record protection of suite keyed from a traffic
// secret, and the 12-byte write IV.
func newAEAD(suite tls13.CipherSuite, secret []byte) (cipher.AEAD, []byte, error) {
	if len(secret) != suite.Hash().Size() {
		return nil, nil, fmt.Errorf("stdtls: %d-byte secret for %v", len(secret), suite)
	}
	key, iv := tls13.TrafficKey(suite, secret)
	defer clear(key)
	switch suite {
	case tls13.TLS_AES_128_GCM_SHA256, tls13.TLS_AES_256_GCM_SHA384:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, nil, err
		}
		a, err := cipher.NewGCM(b)
		return a, iv, err
	case tls13.TLS_CHACHA20_POLY1305_SHA256:
		a, err := chacha20poly1305.New(key)
		return a, iv, err
	}
	return nil, nil, fmt.Errorf("stdtls: unsupported cipher suite %v", suite)
}

// recordNonce is the per-record nonce of RFC 8446, 5.3: the write IV with
// the 64-bit sequence number XORed into its last 8 bytes.
func recordNonce(iv []byte, seq uint64) []byte {
	nonce := append([]byte(nil), iv...)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	for i := range s {
		nonce[len(nonce)-8+i] ^= s[i]
	}
	return nonce
}

var errNotProtected = errors.New("stdtls: not a protected TLS 1.3 record")

// openRecord removes the protection of one TLS 1.3 record (header
// included) sent under secret with sequence number seq, and returns the
// inner content type and content.
func openRecord(suite tls13.CipherSuite, secret []byte, seq uint64, record []byte) (byte, []byte, error) {
	if len(record) < recordHeaderLen || record[0] != recordTypeApplicationData ||
		int(binary.BigEndian.Uint16(record[3:5])) != len(record)-recordHeaderLen {
		return 0, nil, errNotProtected
	}
	aead, iv, err := newAEAD(suite, secret)
	if err != nil {
		return 0, nil, err
	}
	plain, err := aead.Open(nil, recordNonce(iv, seq), record[recordHeaderLen:], record[:recordHeaderLen])
	if err != nil {
		return 0, nil, err
	}
	// TLSInnerPlaintext: content, type, zero padding.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, errors.New("stdtls: record without content type")
	}
	return plain[i], plain[:i], nil
}
