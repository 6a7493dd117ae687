package keyring

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// wrap builds the package's errors: the operation, the serial, the errno,
// and ErrNotFound for ENOKEY.
func wrap(op string, err error) error {
	if errors.Is(err, unix.ENOKEY) {
		return fmt.Errorf("keyring: %s: %w (%w)", op, ErrNotFound, err)
	}
	return fmt.Errorf("keyring: %s: %w", op, err)
}

// Read returns a key's payload (KEYCTL_READ). Reading needs READ
// permission, which for NVMe PSKs only a possessor has.
//
// The caller owns the result and should clear it when done with key
// material.
func Read(id Serial) ([]byte, error) {
	var buf []byte
	for {
		// The first call, with no buffer, only asks for the size. If the
		// key grew between calls (KEYCTL_UPDATE), ask again.
		n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, int(id), buf, 0)
		if err != nil {
			clear(buf)
			return nil, wrap(fmt.Sprintf("reading key %v", id), err)
		}
		if n <= len(buf) {
			return buf[:n:n], nil
		}
		clear(buf)
		buf = make([]byte, n)
	}
}

// Describe returns a key's type, owner, permissions and description
// (KEYCTL_DESCRIBE). It needs only VIEW permission.
func Describe(id Serial) (Description, error) {
	s, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, int(id))
	if err != nil {
		return Description{}, wrap(fmt.Sprintf("describing key %v", id), err)
	}
	d, err := parseDescription(s)
	if err != nil {
		return Description{}, fmt.Errorf("keyring: describing key %v: %w", id, err)
	}
	return d, nil
}

// Search looks for a key of type typ with exactly description desc in
// ring and the keyrings it links to, recursively (KEYCTL_SEARCH), among
// keys the caller may search. Nothing found is an error wrapping
// ErrNotFound. So is a description with a NUL byte, which no key can have
// (a TLS peer chooses the identities a server searches for).
func Search(ring Serial, typ, desc string) (Serial, error) {
	if strings.ContainsRune(desc, 0) {
		return 0, wrap(fmt.Sprintf("searching keyring %v for %s %q", ring, typ, desc), unix.ENOKEY)
	}
	id, err := unix.KeyctlSearch(int(ring), typ, desc, 0)
	if err != nil {
		return 0, wrap(fmt.Sprintf("searching keyring %v for %s %q", ring, typ, desc), err)
	}
	return Serial(id), nil
}

// Link links key id into keyring ring (KEYCTL_LINK), which makes it
// possessed wherever ring is.
func Link(id, ring Serial) error {
	if _, err := unix.KeyctlInt(unix.KEYCTL_LINK, int(id), int(ring), 0, 0); err != nil {
		return wrap(fmt.Sprintf("linking key %v into keyring %v", id, ring), err)
	}
	return nil
}

// Unlink removes the link to key id from keyring ring (KEYCTL_UNLINK).
func Unlink(id, ring Serial) error {
	if _, err := unix.KeyctlInt(unix.KEYCTL_UNLINK, int(id), int(ring), 0, 0); err != nil {
		return wrap(fmt.Sprintf("unlinking key %v from keyring %v", id, ring), err)
	}
	return nil
}

// SetPerm sets a key's permission mask (KEYCTL_SETPERM); see the Perm
// constants.
func SetPerm(id Serial, perm uint32) error {
	if err := unix.KeyctlSetperm(int(id), perm); err != nil {
		return wrap(fmt.Sprintf("setting the permissions of key %v", id), err)
	}
	return nil
}

// GetID returns the real serial of a special keyring such as Process
// (KEYCTL_GET_KEYRING_ID), creating it first if create is set. On Linux
// 6.12 this is how a daemon finds the keyring the kernel linked into its
// process keyring at ACCEPT: the ACCEPT reply has no KEYRING attribute.
func GetID(special Serial, create bool) (Serial, error) {
	id, err := unix.KeyctlGetKeyringID(int(special), create)
	if err != nil {
		return 0, wrap(fmt.Sprintf("getting the serial of keyring %v", special), err)
	}
	return Serial(id), nil
}

// Add creates a key, or updates the key of the same type and description
// in ring, and links it into ring (add_key(2)). Keys of type "keyring"
// take no payload.
func Add(typ, desc string, payload []byte, ring Serial) (Serial, error) {
	id, err := unix.AddKey(typ, desc, payload, int(ring))
	if err != nil {
		return 0, wrap(fmt.Sprintf("adding %s %q to keyring %v", typ, desc, ring), err)
	}
	return Serial(id), nil
}

// FindKeyring returns the serial of the keyring named name, such as
// ".nvme", by scanning /proc/keys as keyutils' find_key_by_type_and_desc
// does. /proc/keys lists only keys the caller may view; possession is not
// needed. Unlike keyutils it takes only a keyring owned by root (uid 0)
// or possessed by the calling thread (found from its thread, process or
// session keyring); when only another user's keyrings have the name the
// error wraps ErrUntrustedKeyring (an *UntrustedKeyringError).
func FindKeyring(name string) (Serial, error) {
	return findKeyringIn(procKeysPath, name, func(s Serial) bool { return possessedKeyring(s, name) })
}

// possessedKeyring reports whether the keyring s called name is reachable
// from the calling thread's own keyrings, which is what possession means.
func possessedKeyring(s Serial, name string) bool {
	for _, ring := range []Serial{Thread, Process, Session} {
		if id, err := unix.KeyctlSearch(int(ring), "keyring", name, 0); err == nil && Serial(id) == s {
			return true
		}
	}
	return false
}
