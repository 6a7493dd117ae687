// Package ktlstest models one direction of a kTLS socket in userspace, for
// tests that must prove installed keys work: it seals and opens TLS 1.3
// records with a ktls.Keys exactly as the kernel's tls_sw would.
package ktlstest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
)

// ErrDecrypt is a record that does not open with the keys (kTLS: EBADMSG).
var ErrDecrypt = errors.New("ktlstest: record does not decrypt with the installed keys")

const chacha20Poly1305 = 0x1303 // TLS_CHACHA20_POLY1305_SHA256

// Direction is the record protection of one direction: its AEAD, static
// IV and next sequence number.
type Direction struct {
	aead cipher.AEAD
	iv   [12]byte
	seq  uint64
}

// NewDirection takes keys as they were (or would be) given to TLS_TX or
// TLS_RX.
func NewDirection(k ktls.Keys) (*Direction, error) {
	var aead cipher.AEAD
	var err error
	if k.Suite == chacha20Poly1305 {
		aead, err = chacha20poly1305.New(k.Key)
	} else {
		var b cipher.Block
		if b, err = aes.NewCipher(k.Key); err == nil {
			aead, err = cipher.NewGCM(b)
		}
	}
	if err != nil {
		return nil, err
	}
	d := &Direction{aead: aead, seq: k.Seq}
	copy(d.iv[:], k.IV)
	return d, nil
}

// nonce is RFC 8446 §5.3's per-record nonce; it consumes a sequence number.
func (d *Direction) nonce() []byte {
	n := d.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], d.seq)
	for i := range s {
		n[4+i] ^= s[i]
	}
	d.seq++
	return n[:]
}

// Seal returns the whole protected record carrying data of content type typ.
func (d *Direction) Seal(typ uint8, data []byte) []byte {
	inner := append(bytes.Clone(data), typ)
	hdr := []byte{23, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+d.aead.Overhead()))
	return d.aead.Seal(hdr, d.nonce(), inner, hdr)
}

// ReadRecord reads one record from r and opens it, returning the inner
// content type and the data without padding.
func (d *Direction) ReadRecord(r io.Reader) (typ uint8, data []byte, err error) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, err
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	plain, err := d.aead.Open(nil, d.nonce(), body, hdr)
	if err != nil {
		return 0, nil, ErrDecrypt
	}
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 {
		return 0, nil, ErrDecrypt // no content type: malformed
	}
	return plain[len(plain)-1], plain[:len(plain)-1], nil
}
