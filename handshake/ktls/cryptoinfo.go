// Package ktls hands a TLS 1.3 session to the kernel (kTLS): it attaches
// the "tls" upper-layer protocol to a TCP socket and installs the traffic
// keys for each direction, after which the kernel encrypts and decrypts
// records itself and the kernel consumer (NVMe, NFS) reads and writes
// plaintext. It also sends and receives single records of a given content
// type on a kTLS socket, for alerts and KeyUpdate.
//
// Keys come in as plain bytes, so the package knows nothing of the
// handshake that produced them.
package ktls

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Numbers from include/uapi/linux/tls.h.
const (
	tls13Version = 0x0304 // TLS_1_3_VERSION

	cipherAESGCM128        = 51 // TLS_CIPHER_AES_GCM_128
	cipherAESGCM256        = 52 // TLS_CIPHER_AES_GCM_256
	cipherChaCha20Poly1305 = 54 // TLS_CIPHER_CHACHA20_POLY1305

	writeIVLen = 12 // TLS 1.3 per-record nonce length (RFC 8446, 5.3)
	recSeqLen  = 8
)

// Keys are the traffic keys of one direction.
type Keys struct {
	// Suite is the TLS 1.3 cipher suite: 0x1301 TLS_AES_128_GCM_SHA256,
	// 0x1302 TLS_AES_256_GCM_SHA384 or 0x1303
	// TLS_CHACHA20_POLY1305_SHA256.
	Suite uint16

	// Key is the traffic key and IV the 12-byte write_iv
	// (RFC 8446, 7.3).
	Key, IV []byte

	// Seq is the sequence number of the next record under these keys:
	// 0 right after the handshake.
	Seq uint64
}

// Zero clears the key and the IV: the caller's copies, once the kernel
// has its own.
func (k *Keys) Zero() {
	clear(k.Key)
	clear(k.IV)
}

// suiteInfo describes one struct tls12_crypto_info_*: a 4-byte header
// {u16 version, u16 cipher_type}, then iv, key, salt and rec_seq with no
// padding.
type suiteInfo struct {
	cipher  uint16
	ivLen   int // the explicit part of the nonce
	keyLen  int
	saltLen int // the implicit part: write_iv[0:saltLen]
}

func (s suiteInfo) size() int { return 4 + s.ivLen + s.keyLen + s.saltLen + recSeqLen }

func suiteFor(suite uint16) (suiteInfo, bool) {
	switch suite {
	case 0x1301:
		return suiteInfo{cipherAESGCM128, 8, 16, 4}, true // 40 bytes
	case 0x1302:
		return suiteInfo{cipherAESGCM256, 8, 32, 4}, true // 56 bytes
	case 0x1303:
		return suiteInfo{cipherChaCha20Poly1305, 12, 32, 0}, true // 56 bytes
	}
	return suiteInfo{}, false
}

func suiteForCipher(cipher uint16) (uint16, suiteInfo, bool) {
	for _, suite := range []uint16{0x1301, 0x1302, 0x1303} {
		if s, _ := suiteFor(suite); s.cipher == cipher {
			return suite, s, true
		}
	}
	return 0, suiteInfo{}, false
}

// CryptoInfo returns the struct the kernel expects for TLS_TX or TLS_RX,
// byte for byte. The AES-GCM structs split write_iv into a 4-byte salt
// and an 8-byte explicit iv; ChaCha20-Poly1305 takes all 12 bytes as iv.
// Either way the kernel's nonce is write_iv XOR the big-endian rec_seq, as
// in RFC 8446, 5.3. Version and cipher type are in host byte order.
//
// The result holds the key: clear it when done.
func CryptoInfo(k Keys) ([]byte, error) {
	s, ok := suiteFor(k.Suite)
	if !ok {
		return nil, fmt.Errorf("ktls: cipher suite %#04x not supported", k.Suite)
	}
	if len(k.Key) != s.keyLen {
		return nil, fmt.Errorf("ktls: cipher suite %#04x needs a %d-byte key, got %d bytes", k.Suite, s.keyLen, len(k.Key))
	}
	if len(k.IV) != writeIVLen {
		return nil, fmt.Errorf("ktls: TLS 1.3 write_iv must be %d bytes, got %d", writeIVLen, len(k.IV))
	}
	b := make([]byte, 0, s.size())
	b = binary.NativeEndian.AppendUint16(b, tls13Version)
	b = binary.NativeEndian.AppendUint16(b, s.cipher)
	b = append(b, k.IV[s.saltLen:]...) // iv
	b = append(b, k.Key...)
	b = append(b, k.IV[:s.saltLen]...) // salt
	b = binary.BigEndian.AppendUint64(b, k.Seq)
	return b, nil
}

// ParseCryptoInfo is the inverse of CryptoInfo, for tests that stand in
// for the kernel. It accepts only TLS 1.3 and the three suites CryptoInfo
// produces.
func ParseCryptoInfo(b []byte) (Keys, error) {
	if len(b) < 4 {
		return Keys{}, errors.New("ktls: crypto_info shorter than its header")
	}
	if v := binary.NativeEndian.Uint16(b); v != tls13Version {
		return Keys{}, fmt.Errorf("ktls: crypto_info version %#04x is not TLS 1.3", v)
	}
	cipher := binary.NativeEndian.Uint16(b[2:])
	suite, s, ok := suiteForCipher(cipher)
	if !ok {
		return Keys{}, fmt.Errorf("ktls: crypto_info cipher type %d not supported", cipher)
	}
	if len(b) != s.size() {
		return Keys{}, fmt.Errorf("ktls: crypto_info for cipher type %d must be %d bytes, got %d", cipher, s.size(), len(b))
	}
	p := b[4:]
	iv, p := p[:s.ivLen], p[s.ivLen:]
	key, p := p[:s.keyLen], p[s.keyLen:]
	salt, p := p[:s.saltLen], p[s.saltLen:]
	k := Keys{
		Suite: suite,
		Key:   append([]byte(nil), key...),
		IV:    append(append(make([]byte, 0, writeIVLen), salt...), iv...),
		Seq:   binary.BigEndian.Uint64(p),
	}
	return k, nil
}
