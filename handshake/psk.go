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
func clientPSKs(keys keyThread, serials []int32) ([]tls13.PSK, error) {
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

// pskHandshake runs a PSK handshake in the request's role: a client
// offers the keys the kernel named, a server looks the client's identity
// up in the request's keyrings only.
func (d *Daemon) pskHandshake(ctx context.Context, r *request, conn net.Conn) (result, error) {
	cfg := &tls13.Config{
		CipherSuites: r.settings.CipherSuites,
		Groups:       r.settings.Groups,
		PSKModes:     r.settings.PSKModes,
		// rsl.go: what the peer sends back reaches kTLS.
		RecordSizeLimit: r.settings.RecordSizeLimit,
		KeyLogWriter:    d.KeyLog,
	}
	var c *tls13.Conn
	var res result
	var lookup *pskLookup
	if r.kind.role == config.Client {
		cfg.PSKs = r.psks
		res.identity = string(r.psks[0].Identity)
		c = tls13.Client(conn, cfg)
	} else {
		lookup = &pskLookup{keys: r.keys, rings: r.rings, policy: r.policy, settings: r.settings,
			match: config.Match{Role: config.Server, Addr: r.peer.Addr(), PeerName: r.PeerName}}
		defer lookup.zero()
		cfg.GetPSK = lookup.get
		c = tls13.Server(conn, cfg)
	}
	err := c.Handshake(ctx)
	if lookup != nil {
		if id, rule, ok := lookup.found(); ok {
			res.identity, res.rule, res.narrowed = id, rule, true
		}
	}
	if err != nil {
		return res, err
	}
	s, err := c.Handoff()
	if err != nil {
		return res, err
	}
	res.session = s
	res.identity = string(s.PSKIdentity)
	res.remoteAuth = []int32{s.Tag.(int32)}
	return res, nil
}

// fillIdentity puts a PSK identity, and the NQNs of an NVMe one, into a
// policy match.
func fillIdentity(m *config.Match, identity string) {
	m.PSKIdentity = identity
	if id, err := nvme.ParseIdentity(identity); err == nil {
		m.HostNQN, m.SubsysNQN = id.HostNQN, id.SubsysNQN
	}
}

// pskLookup finds the key for an identity the client offers, in the
// keyring, and narrows the settings to the policy for that identity.
type pskLookup struct {
	keys     keyThread
	rings    []int32 // the request's keyrings: where a client's identity may be found
	policy   *config.Policy
	settings *config.Settings // resolved before the handshake, without the identity
	match    config.Match

	mu       sync.Mutex
	read     [][]byte // keys read, zeroed after the handshake
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
	l.read = append(l.read, key)
	s := l.settings
	if l.policy.NeedsPSKIdentity() {
		// A rule may test the identity: the one for this identity
		// applies. Otherwise the settings resolved before stand.
		m := l.match
		fillIdentity(&m, id)
		s = l.policy.Resolve(m)
	}
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

// found returns the last identity accepted and the rule that applied to
// it, for the log; ok is false if none was.
func (l *pskLookup) found() (identity, rule string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.identity, l.matched, l.identity != ""
}

func (l *pskLookup) zero() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.read {
		clear(k)
	}
}
