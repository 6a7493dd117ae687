package stdtls

import "github.com/tlshd-go/tlshd-go/handshake/tls13"

// sealRecord protects content of type typ under secret at sequence
// number seq and returns the whole record.
func sealRecord(suite tls13.CipherSuite, secret []byte, seq uint64, typ byte, content []byte) ([]byte, error) {
	p, err := protection(suite, secret)
	if err != nil {
		return nil, err
	}
	return p.Seal(nil, seq, typ, content, 0), nil
}
