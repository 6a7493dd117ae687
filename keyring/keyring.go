// Package keyring reads and manages Linux kernel keys (keyctl(2)): the
// PSKs, certificates and private keys that kernel consumers hand to the
// handshake daemon by key serial.
//
// # Possession
//
// Key permissions have a "possessor" class besides user, group and other.
// A process possesses a key if the key is reachable from the calling
// thread's thread keyring, process keyring or session keyring. Keys that
// matter here typically grant the owner nothing but VIEW: nvme-cli inserts
// TLS PSKs into ".nvme" with KEY_USR_VIEW for the owner, so even root cannot
// read them unless it possesses them.
//
// Keyrings are part of a thread's credentials in the kernel: the thread
// keyring belongs to one thread, and a process keyring created after the
// other threads started is seen by the creating thread only (others get it
// when cloned afterwards). The kernel links a request's keyring into the
// process keyring of the thread that sends ACCEPT. A Go program therefore
// serves each request on one goroutine locked to its OS thread
// (runtime.LockOSThread, never unlocked, so the thread and its keyrings die
// with the goroutine), and makes every call in this package for that
// request from that goroutine. Calls from any other thread may fail with
// EACCES although the same serial works on the right one.
//
// Errors name the serial and wrap the errno; ENOKEY also wraps ErrNotFound.
package keyring

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A Serial identifies a key or keyring. Negative values name the calling
// thread's special keyrings.
type Serial int32

// Special keyrings (KEY_SPEC_*), relative to the calling thread.
const (
	Thread      Serial = -1 // KEY_SPEC_THREAD_KEYRING
	Process     Serial = -2 // KEY_SPEC_PROCESS_KEYRING
	Session     Serial = -3 // KEY_SPEC_SESSION_KEYRING
	User        Serial = -4 // KEY_SPEC_USER_KEYRING
	UserSession Serial = -5 // KEY_SPEC_USER_SESSION_KEYRING
)

// String returns the serial in decimal, or a special keyring's name as
// keyctl(1) spells it.
func (s Serial) String() string {
	switch s {
	case Thread:
		return "@t"
	case Process:
		return "@p"
	case Session:
		return "@s"
	case User:
		return "@u"
	case UserSession:
		return "@us"
	}
	return strconv.FormatInt(int64(s), 10)
}

// Permission bits (include/uapi/linux/keyctl.h): a possessor's, and the
// owning user's.
const (
	PermPossessorAll uint32 = 0x3f000000
	PermUserView     uint32 = 0x00010000
	PermUserRead     uint32 = 0x00020000
	PermUserSearch   uint32 = 0x00080000
	PermUserLink     uint32 = 0x00100000
)

// ErrNotFound means the kernel reported ENOKEY: no such key, or none
// matching a search among the keys the caller possesses.
var ErrNotFound = errors.New("keyring: key not found")

// A Description is what KEYCTL_DESCRIBE reports about a key.
type Description struct {
	Type        string // "user", "keyring", "psk", "asymmetric", ...
	UID, GID    uint32
	Perm        uint32 // possessor, user, group, other: one byte each, high to low
	Description string // for NVMe PSKs, the TLS PSK identity
}

// parseDescription parses "type;uid;gid;perm;description" as
// keyctl_describe_key formats it ("%s;%d;%d;%08x;%s"). The description
// may itself contain ';', so only the first four separate fields.
func parseDescription(s string) (Description, error) {
	f := strings.SplitN(s, ";", 5)
	if len(f) != 5 || f[0] == "" {
		return Description{}, fmt.Errorf("malformed key description %q", s)
	}
	uid, err := parseID(f[1])
	if err != nil {
		return Description{}, fmt.Errorf("key description %q: uid: %w", s, err)
	}
	gid, err := parseID(f[2])
	if err != nil {
		return Description{}, fmt.Errorf("key description %q: gid: %w", s, err)
	}
	perm, err := strconv.ParseUint(f[3], 16, 32)
	if err != nil {
		return Description{}, fmt.Errorf("key description %q: permissions: %w", s, err)
	}
	return Description{Type: f[0], UID: uid, GID: gid, Perm: uint32(perm), Description: f[4]}, nil
}

// parseID parses a uid or gid printed with %d: a uid_t above 2^31 comes
// out negative.
func parseID(s string) (uint32, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if v < -1<<31 || v > 1<<32-1 {
		return 0, fmt.Errorf("%d out of range", v)
	}
	return uint32(v), nil
}
