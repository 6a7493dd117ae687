// Package session keeps the state of TLS 1.3 sessions that kernel TLS
// carries, between the KeyUpdate upcalls of the proposed net/handshake
// interface (v7, see handshake/genl/keyupdate.go): the cipher suite, both
// current application traffic secrets and how many KeyUpdates each has
// been through. The kernel cannot update keys itself, since it never had
// the secrets; the daemon keeps them under an id it returns in DONE, and
// the kernel hands that id back with every later request for the socket.
//
// A Store holds States by id. Keyring (keyring_linux.go) keeps each one
// in a kernel "user" key, so that they survive a restart of the daemon;
// Memory is for tests.
package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// ErrNotFound: no state under that id (never stored, expired, replaced
// by an update, or lost with the keyring).
var ErrNotFound = errors.New("session: no such session")

// A State is one session between two updates. Its secrets are the
// caller's to zero (Zero).
type State struct {
	Suite tls13.CipherSuite
	// Client is the role this side had in the first handshake.
	Client bool
	// Socket identifies the connection's socket (its inode number), so
	// that a state is never applied to another connection's socket.
	Socket uint64
	// TX protects what this side sends, RX what it receives: the
	// application traffic secrets of generation TXGen and RXGen (0 after
	// the handshake, one more at each KeyUpdate, RFC 8446 7.2).
	TX, RX       []byte
	TXGen, RXGen uint32
}

// Zero overwrites the secrets.
func (s *State) Zero() {
	if s == nil {
		return
	}
	clear(s.TX)
	clear(s.RX)
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	c := *s
	c.TX = append([]byte(nil), s.TX...)
	c.RX = append([]byte(nil), s.RX...)
	return &c
}

// encoding: version 1, flags (bit 0: client), suite (u16), TX generation,
// RX generation (u32 each), socket (u64), then the two secrets, whose
// length the suite's hash fixes. Big-endian.
const (
	formatVersion = 1
	headerLen     = 1 + 1 + 2 + 4 + 4 + 8
	flagClient    = 1
)

// MarshalBinary encodes s as a key payload.
func (s *State) MarshalBinary() ([]byte, error) {
	n, err := secretLen(s.Suite)
	if err != nil {
		return nil, err
	}
	if len(s.TX) != n || len(s.RX) != n {
		return nil, fmt.Errorf("session: secrets of %d and %d bytes for %v, want %d", len(s.TX), len(s.RX), s.Suite, n)
	}
	b := make([]byte, headerLen, headerLen+2*n)
	b[0] = formatVersion
	if s.Client {
		b[1] = flagClient
	}
	binary.BigEndian.PutUint16(b[2:], uint16(s.Suite))
	binary.BigEndian.PutUint32(b[4:], s.TXGen)
	binary.BigEndian.PutUint32(b[8:], s.RXGen)
	binary.BigEndian.PutUint64(b[12:], s.Socket)
	b = append(b, s.TX...)
	return append(b, s.RX...), nil
}

// UnmarshalBinary decodes a payload from MarshalBinary, copying the
// secrets out of b.
func (s *State) UnmarshalBinary(b []byte) error {
	if len(b) < headerLen {
		return errors.New("session: state truncated")
	}
	if b[0] != formatVersion {
		return fmt.Errorf("session: state format %d, want %d", b[0], formatVersion)
	}
	if b[1]&^flagClient != 0 {
		return fmt.Errorf("session: unknown state flags %#x", b[1])
	}
	suite := tls13.CipherSuite(binary.BigEndian.Uint16(b[2:]))
	n, err := secretLen(suite)
	if err != nil {
		return err
	}
	if len(b) != headerLen+2*n {
		return fmt.Errorf("session: state of %d bytes, want %d for %v", len(b), headerLen+2*n, suite)
	}
	*s = State{
		Suite:  suite,
		Client: b[1]&flagClient != 0,
		TXGen:  binary.BigEndian.Uint32(b[4:]),
		RXGen:  binary.BigEndian.Uint32(b[8:]),
		Socket: binary.BigEndian.Uint64(b[12:]),
		TX:     append([]byte(nil), b[headerLen:headerLen+n]...),
		RX:     append([]byte(nil), b[headerLen+n:]...),
	}
	return nil
}

func secretLen(s tls13.CipherSuite) (int, error) {
	switch s {
	case tls13.TLS_AES_128_GCM_SHA256, tls13.TLS_CHACHA20_POLY1305_SHA256:
		return 32, nil
	case tls13.TLS_AES_256_GCM_SHA384:
		return 48, nil
	}
	return 0, fmt.Errorf("session: cipher suite %v", s)
}

// A Store keeps States by id. Ids are never 0 (the kernel's "no
// session") and never reused while a State is stored under them.
// Implementations need not be safe for concurrent use: the daemon calls
// one only from its key thread.
type Store interface {
	// Put stores a copy of s under a new id.
	Put(s *State) (id uint32, err error)
	// Get returns a copy of the State under id, or an error wrapping
	// ErrNotFound.
	Get(id uint32) (*State, error)
	// Delete destroys the State under id; a missing one is not an error.
	Delete(id uint32) error
}

// Memory is a Store in process memory: it does not survive a restart.
// The zero value is ready; it is safe for concurrent use.
type Memory struct {
	mu     sync.Mutex
	next   uint32
	states map[uint32][]byte
}

func (m *Memory) Put(s *State) (uint32, error) {
	b, err := s.MarshalBinary()
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.states == nil {
		m.states = map[uint32][]byte{}
	}
	m.next++
	m.states[m.next] = b
	return m.next, nil
}

func (m *Memory) Get(id uint32) (*State, error) {
	m.mu.Lock()
	b, ok := m.states[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	s := new(State)
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}

func (m *Memory) Delete(id uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.states[id])
	delete(m.states, id)
	return nil
}

// Len returns how many States are stored.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.states)
}
