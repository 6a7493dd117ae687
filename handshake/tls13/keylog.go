package tls13

import "encoding/hex"

// NSS key log labels for TLS 1.3 (the format of SSLKEYLOGFILE, which
// Wireshark reads; crypto/tls and GnuTLS write the same).
const (
	keyLogClientHandshake = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
	keyLogServerHandshake = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
	keyLogClientTraffic   = "CLIENT_TRAFFIC_SECRET_0"
	keyLogServerTraffic   = "SERVER_TRAFFIC_SECRET_0"
)

// logKeys writes the client's and the server's secret of one stage to
// Config.KeyLogWriter, if set, one line each. Debugging only: whoever
// reads the log can decrypt the connection.
func (c *Config) logKeys(clientRandom []byte, clientLabel string, client []byte, serverLabel string, server []byte) {
	if c.KeyLogWriter == nil {
		return
	}
	for _, l := range []struct {
		label  string
		secret []byte
	}{{clientLabel, client}, {serverLabel, server}} {
		line := make([]byte, 0, len(l.label)+2+2*len(clientRandom)+2*len(l.secret)+1)
		line = append(line, l.label...)
		line = append(line, ' ')
		line = hex.AppendEncode(line, clientRandom)
		line = append(line, ' ')
		line = hex.AppendEncode(line, l.secret)
		line = append(line, '\n')
		c.KeyLogWriter.Write(line)
		clear(line)
	}
}
