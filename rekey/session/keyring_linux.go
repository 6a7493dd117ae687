package session

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/keyring"
)

// Names and permissions of what Keyring creates.
const (
	// RingName is the keyring that holds the sessions, linked into the
	// user keyring of uid 0.
	RingName = "tlshd-go:sessions"
	// keyPrefix begins every session key's description; the rest is
	// random, so that add_key never updates another session's key.
	keyPrefix = "tlshd-go:session:"

	// A possessor may do everything; uid 0 without possession may only
	// see that they exist (keyctl show, /proc/keys).
	ringPerm = keyring.PermPossessorAll | keyring.PermUserView
	keyPerm  = keyring.PermPossessorAll | keyring.PermUserView

	// DefaultTTL is how long a session's state outlives its last update.
	DefaultTTL = 7 * 24 * time.Hour
)

// Keyring is a Store in the kernel's keyrings: each State is a "user" key
// (the id is its serial) in the keyring RingName, which is linked into
// the user keyring of uid 0 (@u) and, for possession, into the calling
// thread's keyring.
//
// Why there: the state must outlive the daemon process. The thread and
// process keyrings die with it, and under systemd (KeyringMode=private)
// each start of the service gets a new session keyring, so a session
// keyring would not survive a restart either. The user keyring of uid 0
// lives as long as the kernel, and only uid 0 can reach it. RingName and
// its keys grant everything to a possessor and nothing but VIEW to
// anyone else: only processes of uid 0 that reach @u possess them (the
// daemon by linking RingName into its key thread's keyring, a root login
// shell through its user-session keyring); uid 0 could as well ptrace the
// daemon, so nothing stronger is on offer.
//
// Reclaiming: every key expires TTL after it was written (each update
// writes a new key), so the state of connections that are gone is
// reclaimed by the kernel's key garbage collector, and the daemon keeps no
// list. The price: a connection that goes TTL without an update loses its
// state, and its next update request gets ENOKEY, after which the
// consumer drops the connection and makes a new one.
//
// All calls must come from the same OS thread (the daemon's key thread):
// possession is per thread. The first call links RingName there.
type Keyring struct {
	// TTL is how long a key lives after it is written; 0 means
	// DefaultTTL.
	TTL time.Duration
	// Name is the keyring's description; "" means RingName.
	Name string

	ring keyring.Serial // 0 until the first call
}

// Open finds or creates RingName and links it into the calling thread's
// keyring. Calls to the Store methods open it if needed.
func (k *Keyring) Open() error {
	if k.ring != 0 {
		return nil
	}
	user, err := keyring.GetID(keyring.User, true)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	// The user keyring reached through its special id is possessed, and
	// so is what a search from it finds.
	name := k.Name
	if name == "" {
		name = RingName
	}
	ring, err := keyring.Search(user, "keyring", name)
	if errors.Is(err, keyring.ErrNotFound) || gone(err) {
		// add_key would replace a keyring of the same name, so it is
		// created only when the search found none (or one invalidated,
		// revoked or expired, which the collector has yet to remove).
		if ring, err = keyring.Add("keyring", name, nil, user); err == nil {
			err = keyring.SetPerm(ring, ringPerm)
		}
	}
	if err != nil {
		return fmt.Errorf("session: opening keyring %q: %w", name, err)
	}
	if d, err := keyring.Describe(ring); err != nil || d.UID != 0 || d.Type != "keyring" {
		return fmt.Errorf("session: keyring %q (%v) is not a keyring of uid 0: %+v %v", name, ring, d, err)
	}
	if err := keyring.Link(ring, keyring.Thread); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	k.ring = ring
	return nil
}

// Ring returns the keyring's serial, 0 before Open.
func (k *Keyring) Ring() int32 { return int32(k.ring) }

func (k *Keyring) ttl() time.Duration {
	if k.TTL > 0 {
		return k.TTL
	}
	return DefaultTTL
}

func (k *Keyring) Put(s *State) (uint32, error) {
	if err := k.Open(); err != nil {
		return 0, err
	}
	b, err := s.MarshalBinary()
	if err != nil {
		return 0, err
	}
	defer clear(b)
	var r [8]byte
	rand.Read(r[:])
	id, err := keyring.Add("user", keyPrefix+hex.EncodeToString(r[:]), b, k.ring)
	if err != nil {
		return 0, fmt.Errorf("session: %w", err)
	}
	if err := keyring.SetPerm(id, keyPerm); err != nil {
		invalidate(id)
		return 0, fmt.Errorf("session: %w", err)
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_SET_TIMEOUT, int(id), int(k.ttl()/time.Second), 0, 0); err != nil {
		invalidate(id)
		return 0, fmt.Errorf("session: setting the timeout of key %v: %w", id, err)
	}
	return uint32(id), nil
}

func (k *Keyring) Get(id uint32) (*State, error) {
	if err := k.Open(); err != nil {
		return nil, err
	}
	if id == 0 || id > 1<<31-1 {
		return nil, fmt.Errorf("%w: id %d", ErrNotFound, id)
	}
	serial := keyring.Serial(id)
	// Only our own keys: a serial that was ours may since have gone to
	// someone else's key.
	d, err := keyring.Describe(serial)
	if err != nil {
		return nil, notFound(id, err)
	}
	if d.Type != "user" || d.UID != 0 || !strings.HasPrefix(d.Description, keyPrefix) {
		return nil, fmt.Errorf("%w: key %d is not a tlshd-go session", ErrNotFound, id)
	}
	b, err := keyring.Read(serial)
	if err != nil {
		return nil, notFound(id, err)
	}
	defer clear(b)
	s := new(State)
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}

func (k *Keyring) Delete(id uint32) error {
	if id == 0 || id > 1<<31-1 {
		return nil
	}
	if err := invalidate(keyring.Serial(id)); err != nil && !gone(err) {
		return fmt.Errorf("session: invalidating key %d: %w", id, err)
	}
	return nil
}

// invalidate destroys a key at once (KEYCTL_INVALIDATE): unlike unlink
// it leaves nothing for a later reader.
func invalidate(id keyring.Serial) error {
	_, err := unix.KeyctlInt(unix.KEYCTL_INVALIDATE, int(id), 0, 0, 0)
	return err
}

func gone(err error) bool {
	return errors.Is(err, unix.ENOKEY) || errors.Is(err, unix.EKEYEXPIRED) || errors.Is(err, unix.EKEYREVOKED)
}

func notFound(id uint32, err error) error {
	// EACCES: a key we do not possess, so not one of ours.
	if gone(err) || errors.Is(err, keyring.ErrNotFound) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: id %d (%w)", ErrNotFound, id, err)
	}
	return fmt.Errorf("session: reading key %d: %w", id, err)
}
