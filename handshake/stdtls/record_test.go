package stdtls

import "github.com/tlshd-go/tlshd-go/handshake/tls13"

// sealRecord protects content of type typ under secret at sequence
// number seq and returns the whole record.
func sealRecord(suite tls13.CipherSuite, secret []byte, seq uint64, typ byte, content []byte) ([]byte, error) {
	aead, iv, err := newAEAD(suite, secret)
	if err != nil {
		return nil, err
	}
	inner := append(append([]byte(nil), content...), typ)
	n := len(inner) + aead.Overhead()
	hdr := []byte{recordTypeApplicationData, 3, 3, byte(n >> 8), byte(n)}
	return aead.Seal(hdr, recordNonce(iv, seq), inner, hdr), nil
}
