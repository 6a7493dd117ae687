package ktls

import (
	"errors"

	"golang.org/x/sys/unix"
)

// ErrNoMaxPayload means the kernel has no TLS_TX_MAX_PAYLOAD_LEN (before
// Linux 7.3: setsockopt fails with ENOPROTOOPT), so it would send records
// of up to 16 KiB to a peer whose record_size_limit (RFC 8449) is lower. A
// daemon refuses such a handshake (EOPNOTSUPP) rather than let the peer
// fail the connection with record_overflow at the first large write.
var ErrNoMaxPayload = errors.New("ktls: kernel has no TLS_TX_MAX_PAYLOAD_LEN (Linux 7.3+) to honour the peer's record_size_limit")

// MaxRecordSizeLimit is the largest record_size_limit a TLS 1.3 peer can
// send (RFC 8449, 4: 2^14 plaintext plus the content type byte), the
// limit kTLS already keeps without TLS_TX_MAX_PAYLOAD_LEN.
const MaxRecordSizeLimit = 1<<14 + 1

// MaxPayload turns a TLS 1.3 peer's record_size_limit (0: none sent) into
// Options.TxMaxPayload: 0 when kTLS's default of 2^14 bytes already
// respects it, else the limit minus the content type byte that the limit
// counts and TLS_TX_MAX_PAYLOAD_LEN does not.
func MaxPayload(peerLimit int) uint16 {
	if peerLimit <= 0 || peerLimit >= MaxRecordSizeLimit {
		return 0
	}
	return uint16(peerLimit - 1)
}

func maxPayloadError(err error) error {
	e := &InstallError{Step: StepMaxPayload, Err: err}
	if errors.Is(err, unix.ENOPROTOOPT) {
		e.kind = ErrNoMaxPayload
	}
	return e
}
