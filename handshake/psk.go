package handshake

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/keyring"
	"github.com/tlshd-go/tlshd-go/keyring/nvme"
)

// clientPSKs reads the PSKs the kernel named, in its order, skipping
// those that cannot be read; none at all is ENOKEY.
func clientPSKs(keys Keyring, serials []int32) ([]tls13.PSK, error) {
	var psks []tls13.PSK
	var errs []error
	for _, serial := range serials {
		identity, key, err := keys.ReadPSK(serial)
		if err != nil {
			errs = append(errs, fmt.Errorf("PSK %d: %w", serial, err))
			continue
		}
		psks = append(psks, tls13.PSK{Identity: []byte(identity), Key: key, Hash: pskHash(identity, key), Tag: serial})
	}
	if len(psks) == 0 {
		if len(serials) == 0 {
			errs = append(errs, errors.New("the request names no PSK"))
		}
		return nil, fmt.Errorf("%w: %w", errNoKey, errors.Join(errs...))
	}
	return psks, nil
}

// pskHash is the hash a PSK is bound to: an NVMe identity says it ("hh"
// 01 or 02); otherwise a 48-byte key is taken for SHA-384, like
// ktls-utils does, and anything else for SHA-256.
func pskHash(identity string, key []byte) crypto.Hash {
	if id, err := nvme.ParseIdentity(identity); err == nil {
		return id.Hash
	}
	if len(key) == 48 {
		return crypto.SHA384
	}
	return crypto.SHA256
}

func zeroPSKs(psks []tls13.PSK) {
	for i := range psks {
		clear(psks[i].Key)
	}
}

// pskHandshake runs a PSK handshake in the request's role.
func (d *Daemon) pskHandshake(ctx context.Context, conn net.Conn, keys Keyring, rings []int32, o *outcome, psks []tls13.PSK,
	policy *config.Policy, settings *config.Settings) (*tls13.Session, error) {
	cfg := &tls13.Config{
		CipherSuites: settings.CipherSuites,
		Groups:       settings.Groups,
		PSKModes:     settings.PSKModes,
	}
	var c *tls13.Conn
	if o.role == config.Client {
		cfg.PSKs = psks
		o.identity = string(psks[0].Identity)
		c = tls13.Client(conn, cfg)
	} else {
		lookup := &pskLookup{keys: keys, rings: rings, policy: policy, match: config.Match{Role: config.Server, Addr: o.peer.Addr(), PeerName: o.peerName}}
		defer lookup.zero()
		cfg.GetPSK = lookup.get
		c = tls13.Server(conn, cfg)
		defer func() { o.identity, o.rule = lookup.identity, lookup.rule(o.rule) }()
	}
	if err := c.Handshake(ctx); err != nil {
		return nil, err
	}
	s, err := c.Handoff()
	if err != nil {
		return nil, err
	}
	o.identity = string(s.PSKIdentity)
	o.remoteAuth = []int32{s.Tag.(int32)}
	return s, nil
}

// pskLookup finds the key for an identity the client offers, in the
// keyring, and narrows the settings to the policy for that identity.
type pskLookup struct {
	keys   Keyring
	rings  []int32 // the request's keyrings: where a client's identity may be found
	policy *config.Policy
	match  config.Match

	mu       sync.Mutex
	found    [][]byte // keys read, zeroed after the handshake
	identity string   // the last identity found, for the log
	matched  string   // the rule that applied to it
}

func (l *pskLookup) get(identity []byte) (*tls13.PSK, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := string(identity)
	serial, key, err := l.keys.SearchPSK(l.rings, id)
	if errors.Is(err, keyring.ErrNotFound) {
		return nil, fmt.Errorf("no PSK %q in the keyring: %w", id, tls13.ErrUnknownPSK)
	}
	if err != nil {
		return nil, err
	}
	l.found = append(l.found, key)
	m := l.match
	fillIdentity(&m, id)
	s := l.policy.Resolve(m)
	if s.Reject || !s.Auth.Allows(config.AuthPSK) {
		// Answer as if unknown: the client learns nothing of the policy.
		return nil, fmt.Errorf("PSK %q refused by policy rule %q: %w", id, s.Rule, tls13.ErrUnknownPSK)
	}
	l.identity, l.matched = id, s.Rule
	return &tls13.PSK{
		Identity:     identity,
		Key:          key,
		Hash:         pskHash(id, key),
		Tag:          serial,
		CipherSuites: s.CipherSuites,
		Groups:       s.Groups,
		PSKModes:     s.PSKModes,
	}, nil
}

// rule is the policy rule for the log: the identity's, once known.
func (l *pskLookup) rule(before string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.identity != "" {
		return l.matched
	}
	return before
}

func (l *pskLookup) zero() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.found {
		clear(k)
	}
}
