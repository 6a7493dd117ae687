package tls13

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
)

// A PSK is an external pre-shared key (RFC 8446, 2.2), bound to one hash:
// it can only be used with cipher suites of that hash. For NVMe/TCP the
// identity's "hh" field decides it (01 SHA-256, 02 SHA-384).
type PSK struct {
	Identity []byte
	Key      []byte
	Hash     crypto.Hash // crypto.SHA256 or crypto.SHA384

	// Tag is the caller's, carried into Session.Tag when this PSK is
	// used (the daemon keeps the key serial there).
	Tag any

	// A server's lookup may narrow the Config's settings for this PSK
	// (policy per identity); nil means the Config's.
	CipherSuites []CipherSuite
	Groups       []Group
	PSKModes     []PSKMode
}

func (p *PSK) check() error {
	switch {
	case len(p.Identity) == 0 || len(p.Identity) > 0xffff:
		return fmt.Errorf("tls13: PSK identity of %d bytes", len(p.Identity))
	case len(p.Key) == 0:
		return fmt.Errorf("tls13: empty PSK for identity %q", p.Identity)
	case p.Hash != crypto.SHA256 && p.Hash != crypto.SHA384:
		return fmt.Errorf("tls13: PSK %q bound to unsupported hash %v", p.Identity, p.Hash)
	}
	return nil
}

// A Config is the settings of one side. It is not modified by the engine
// and may be shared by concurrent connections.
type Config struct {
	// Rand supplies the hello randoms and FFDHE exponents; nil means
	// crypto/rand. crypto/ecdh and crypto/mlkem draw their own
	// randomness (see testing/cryptotest for deterministic tests).
	Rand io.Reader

	// CipherSuites in preference order; nil means DefaultCipherSuites.
	CipherSuites []CipherSuite

	// Groups in preference order; nil means DefaultGroups. A client
	// sends key shares for the first KeyShares of them (default 1);
	// a server picks the first it and the client share, asking for it
	// with a HelloRetryRequest when the client sent no share for it.
	Groups    []Group
	KeyShares int

	// PSKModes: for a client the modes it offers, for a server the ones
	// it accepts, in preference order. nil means psk_dhe_ke for a client
	// and psk_dhe_ke then psk_ke for a server.
	PSKModes []PSKMode

	// PSKs a client offers, in order, in one ClientHello.
	PSKs []PSK

	// GetPSK is how a server finds the key for an identity the client
	// offered. It returns an error wrapping ErrUnknownPSK when it has
	// none; any other error aborts the handshake.
	GetPSK func(identity []byte) (*PSK, error)

	// ServerName is the server_name a client sends, if not empty.
	ServerName string

	// RecordSizeLimit, if not zero, is advertised in record_size_limit
	// (RFC 8449): the largest record, content type included, this side
	// accepts. A server only answers a client that sent one.
	RecordSizeLimit int

	// KeyLogWriter, if set, receives the traffic secrets in NSS key log
	// format (SSLKEYLOGFILE), for debugging with Wireshark. It defeats
	// the protection of every connection it logs.
	KeyLogWriter io.Writer
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) cipherSuites() []CipherSuite {
	if c.CipherSuites != nil {
		return c.CipherSuites
	}
	return DefaultCipherSuites
}

func (c *Config) groups() []Group {
	if c.Groups != nil {
		return c.Groups
	}
	return DefaultGroups
}

func (c *Config) pskModes(isClient bool) []PSKMode {
	switch {
	case c.PSKModes != nil:
		return c.PSKModes
	case isClient:
		return []PSKMode{PSKModeDHE}
	}
	return []PSKMode{PSKModeDHE, PSKModeKE}
}

// maxPSKExtension bounds a client's pre_shared_key extension: the
// ClientHello's extensions block has a 16-bit length, and the other
// extensions take at most about 2.5 KiB (key shares for every group, one
// ML-KEM, included); 4 KiB are left for them.
const maxPSKExtension = 0xffff - 4096

// check rejects settings the engine cannot honour, before any byte is
// sent.
func (c *Config) check(isClient bool) error {
	for _, s := range c.cipherSuites() {
		if !s.Supported() {
			return fmt.Errorf("tls13: unsupported cipher suite %v", s)
		}
	}
	for _, g := range c.groups() {
		if !g.Supported() {
			return fmt.Errorf("tls13: unsupported group %v", g)
		}
	}
	for _, m := range c.pskModes(isClient) {
		if m != PSKModeKE && m != PSKModeDHE {
			return fmt.Errorf("tls13: unknown PSK mode %v", m)
		}
	}
	if len(c.cipherSuites()) == 0 || len(c.pskModes(isClient)) == 0 {
		return errors.New("tls13: no cipher suites or PSK modes enabled")
	}
	if slices.Contains(c.pskModes(isClient), PSKModeDHE) && len(c.groups()) == 0 {
		return errors.New("tls13: psk_dhe_ke enabled without groups")
	}
	if c.RecordSizeLimit != 0 && (c.RecordSizeLimit < 64 || c.RecordSizeLimit > maxPlaintext+1) {
		return fmt.Errorf("tls13: record size limit %d out of range 64..%d", c.RecordSizeLimit, maxPlaintext+1)
	}
	for i, g := range c.groups() {
		if slices.Contains(c.groups()[:i], g) {
			return fmt.Errorf("tls13: group %v listed twice", g)
		}
	}
	if isClient {
		if len(c.PSKs) == 0 {
			return errors.New("tls13: client has no PSK to offer")
		}
		if len(c.PSKs) > maxIdentities {
			return fmt.Errorf("tls13: %d PSKs offered, at most %d", len(c.PSKs), maxIdentities)
		}
		ext := 4 + 2 + 2 // pre_shared_key header, identities and binders lengths
		for i := range c.PSKs {
			if err := c.PSKs[i].check(); err != nil {
				return err
			}
			ext += 2 + len(c.PSKs[i].Identity) + 4 + 1 + c.PSKs[i].Hash.Size()
		}
		// The ClientHello's extensions share one 16-bit length; refuse
		// here, with a clear reason, what could not be encoded.
		if ext > maxPSKExtension {
			return fmt.Errorf("tls13: the PSK identities need %d bytes in the ClientHello, at most %d fit", ext, maxPSKExtension)
		}
		if len(c.ServerName) > 255 {
			return fmt.Errorf("tls13: server name of %d bytes", len(c.ServerName))
		}
	} else if c.GetPSK == nil {
		return errors.New("tls13: server has no GetPSK")
	}
	return nil
}
