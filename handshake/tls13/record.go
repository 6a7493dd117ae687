package tls13

import (
	"errors"

	"github.com/tlshd-go/tlshd-go/handshake/tlsrecord"
)

// Record content types and sizes, from the one place they are declared.
const (
	recordTypeChangeCipherSpec = tlsrecord.TypeChangeCipherSpec
	recordTypeAlert            = tlsrecord.TypeAlert
	recordTypeHandshake        = tlsrecord.TypeHandshake
	recordTypeApplicationData  = tlsrecord.TypeApplicationData

	recordHeaderLen = tlsrecord.HeaderLen
	maxPlaintext    = tlsrecord.MaxPlaintext
	maxCiphertext   = tlsrecord.MaxCiphertext
)

// A halfConn is one direction of the record layer: the traffic secret
// in use and the sequence number of the next record. Before any secret is
// set, records are plaintext. The AEAD is keyed on first use, so a
// connection handed to kTLS never expands keys it will not use.
type halfConn struct {
	suite  CipherSuite
	secret []byte
	seq    uint64
	prot   tlsrecord.Protection // not Ready until first use
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
	hc.prot.Zero()
	hc.suite, hc.secret, hc.seq = suite, secret, 0
	return nil
}

// protection returns the record protection for the current secret,
// deriving key and IV once.
func (hc *halfConn) protection() (*tlsrecord.Protection, error) {
	if !hc.prot.Ready() {
		key, iv := TrafficKey(hc.suite, hc.secret)
		defer clear(key)
		defer clear(iv)
		if err := hc.prot.Init(uint16(hc.suite), key, iv); err != nil {
			return nil, err
		}
	}
	return &hc.prot, nil
}

// zero forgets the keys; the halfConn can no longer protect records.
func (hc *halfConn) zero() {
	clear(hc.secret)
	hc.prot.Zero()
	hc.secret = nil
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
	p, err := hc.protection()
	if err != nil {
		return out, err
	}
	out = p.Seal(out, hc.seq, typ, data, padding)
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
	p, err := hc.protection()
	if err != nil {
		return 0, nil, err
	}
	typ, data, err := p.Open(hc.seq, hdr, payload)
	switch {
	case errors.Is(err, tlsrecord.ErrDecrypt):
		return 0, nil, alertf(AlertBadRecordMAC, "record failed to decrypt")
	case errors.Is(err, tlsrecord.ErrOverflow):
		return 0, nil, alertf(AlertRecordOverflow, "decrypted record of more than %d bytes", maxPlaintext+1)
	case errors.Is(err, tlsrecord.ErrNoContentType):
		return 0, nil, alertf(AlertUnexpectedMessage, "record with no content type")
	case err != nil:
		return 0, nil, err
	}
	hc.seq++
	return typ, data, nil
}
