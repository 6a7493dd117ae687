package stdtls

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/handshake/tlsrecord"
)

// protection returns the record protection of suite keyed from a
// traffic secret, the same implementation the PSK engine uses.
func protection(suite tls13.CipherSuite, secret []byte) (*tlsrecord.Protection, error) {
	if len(secret) != suite.Hash().Size() {
		return nil, fmt.Errorf("stdtls: %d-byte secret for %v", len(secret), suite)
	}
	key, iv := tls13.TrafficKey(suite, secret)
	defer clear(key)
	defer clear(iv)
	p := new(tlsrecord.Protection)
	if err := p.Init(uint16(suite), key, iv); err != nil {
		return nil, fmt.Errorf("stdtls: %w", err)
	}
	return p, nil
}

var errNotProtected = errors.New("stdtls: not a protected TLS 1.3 record")

// openRecord removes the protection of one TLS 1.3 record (header
// included) sent under secret with sequence number seq, and returns the
// inner content type and content. record is not modified.
func openRecord(suite tls13.CipherSuite, secret []byte, seq uint64, record []byte) (byte, []byte, error) {
	if len(record) < recordHeaderLen || record[0] != recordTypeApplicationData ||
		int(binary.BigEndian.Uint16(record[3:5])) != len(record)-recordHeaderLen {
		return 0, nil, errNotProtected
	}
	p, err := protection(suite, secret)
	if err != nil {
		return 0, nil, err
	}
	body := append([]byte(nil), record[recordHeaderLen:]...)
	return p.Open(seq, record[:recordHeaderLen], body)
}
