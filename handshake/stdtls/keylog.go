package stdtls

import (
	"bytes"
	"encoding/hex"
	"io"
)

// The NSS key log labels crypto/tls writes for TLS 1.3
// (crypto/tls/common.go).
const (
	labelClientHandshake = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
	labelServerHandshake = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
	labelClientTraffic   = "CLIENT_TRAFFIC_SECRET_0"
	labelServerTraffic   = "SERVER_TRAFFIC_SECRET_0"
)

// keyLog is a per-handshake tls.Config.KeyLogWriter that keeps the TLS 1.3
// traffic secrets in memory instead of writing them anywhere. crypto/tls
// writes one line per Write ("LABEL <client random hex> <secret hex>\n")
// under a process-wide mutex; each line is decoded at once, so no text
// copy of a secret outlives the Write call.
type keyLog struct {
	clientHS, serverHS []byte // handshake traffic secrets
	clientAP, serverAP []byte // first application traffic secrets
	malformed          bool   // a line did not parse
	// tee, if set, also gets every line: the caller's KeyLogWriter (the
	// daemon's SSLKEYLOGFILE, for debugging).
	tee io.Writer
}

func (k *keyLog) Write(line []byte) (int, error) {
	if k.tee != nil {
		k.tee.Write(line)
	}
	label, rest, ok1 := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
	_, secretHex, ok2 := bytes.Cut(rest, []byte(" "))
	var dst *[]byte
	switch string(label) {
	case labelClientHandshake:
		dst = &k.clientHS
	case labelServerHandshake:
		dst = &k.serverHS
	case labelClientTraffic:
		dst = &k.clientAP
	case labelServerTraffic:
		dst = &k.serverAP
	default:
		// Early and exporter secrets, TLS 1.2 labels: not needed.
		return len(line), nil
	}
	if !ok1 || !ok2 || len(secretHex) == 0 || len(secretHex)%2 != 0 {
		k.malformed = true
		return len(line), nil
	}
	secret := make([]byte, len(secretHex)/2)
	if _, err := hex.Decode(secret, secretHex); err != nil {
		clear(secret)
		k.malformed = true
		return len(line), nil
	}
	clear(*dst)
	*dst = secret
	return len(line), nil
}

// zeroHandshake overwrites the handshake secrets, which are only needed to
// read a failed handshake's last alert.
func (k *keyLog) zeroHandshake() {
	clear(k.clientHS)
	clear(k.serverHS)
	k.clientHS, k.serverHS = nil, nil
}

// zero overwrites every secret held.
func (k *keyLog) zero() {
	k.zeroHandshake()
	clear(k.clientAP)
	clear(k.serverAP)
	k.clientAP, k.serverAP = nil, nil
}
