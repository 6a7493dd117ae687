package rekey

import (
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// Keys derives what kTLS takes from one direction's traffic secret: the
// one place a tls13 secret becomes ktls.Keys. The daemon's hand-off, the
// connect/serve --ktls commands and every KeyUpdate (at sequence 0) use
// it. The caller zeroes Key when done.
func Keys(suite tls13.CipherSuite, ts tls13.TrafficSecret) ktls.Keys {
	key, iv := tls13.TrafficKey(suite, ts.Secret)
	return ktls.Keys{Suite: uint16(suite), Key: key, IV: iv, Seq: ts.Seq}
}

// SessionKeys is Keys for both directions of a finished handshake.
func SessionKeys(s *tls13.Session) (tx, rx ktls.Keys) {
	return Keys(s.Suite, s.TX), Keys(s.Suite, s.RX)
}
