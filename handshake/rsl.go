package handshake

import (
	"errors"
	"fmt"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// Record size limit (RFC 8449). The PSK engine negotiates it; the x509
// path cannot (crypto/tls neither sends nor answers the extension, so its
// sessions never carry a peer limit and kTLS's 16 KiB records are what
// the peer agreed to). A peer's limit below 2^14+1 reaches kTLS as
// TLS_TX_MAX_PAYLOAD_LEN (Linux 7.3); a kernel without that option
// cannot keep it, and the handshake is refused (EOPNOTSUPP, like any
// socket the host's kTLS cannot serve) instead of handing the consumer a
// socket whose first large write the peer must answer with
// record_overflow.
//
// What this side advertises ([client]/[server] record_size_limit, none by
// default) only asks the peer to send smaller records: kTLS RX accepts
// every size up to 2^14, so any limit RFC 8449 allows (64 to 2^14+1) is
// one kTLS keeps.

// installOptions are the kTLS options a session needs.
func installOptions(s *tls13.Session) ktls.Options {
	return ktls.Options{TxMaxPayload: ktls.MaxPayload(s.PeerRecordSizeLimit)}
}

// explainInstall says why an install failed when the cause is the peer's
// record size limit.
func explainInstall(err error, s *tls13.Session) error {
	if err != nil && errors.Is(err, ktls.ErrNoMaxPayload) {
		return fmt.Errorf("refusing the peer's record_size_limit %d: this kernel cannot cap the records kTLS sends (needs TLS_TX_MAX_PAYLOAD_LEN, Linux 7.3): %w",
			s.PeerRecordSizeLimit, err)
	}
	return err
}
