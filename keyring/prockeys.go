package keyring

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

const procKeysPath = "/proc/keys"

// A procKey is one line of /proc/keys, as proc_keys_show
// (security/keys/proc.c) prints it:
//
//	"%08x %c%c%c%c%c%c%c %5d %4s %08x %5d %5d %-9.9s " then the type's description
//
// for example
//
//	0b0b8fa4 I--Q---     1 perm 3f010000     0     0 keyring   .nvme: 1
//
// A keyring's description is its name followed by ": <number of keys>"
// or ": empty".
type procKey struct {
	Serial      Serial
	Flags       string
	Usage       int
	Timeout     string // "perm", "expd" or a remaining time such as "5d"
	Perm        uint32
	UID, GID    int64
	Type        string
	Description string
}

// parseProcKeysLine parses one line of /proc/keys. The description is
// everything after the type column, without the spaces that pad it.
func parseProcKeysLine(line string) (procKey, error) {
	var f [8]string
	rest := strings.TrimSuffix(line, "\n")
	if strings.ContainsRune(rest, '\n') {
		return procKey{}, fmt.Errorf("keyring: /proc/keys line %q holds more than one line", line)
	}
	for i := range f {
		rest = strings.TrimLeft(rest, " ")
		end := strings.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			return procKey{}, fmt.Errorf("keyring: /proc/keys line %q has %d fields, want at least 8", line, i)
		}
		f[i], rest = rest[:end], rest[end:]
	}
	bad := func(what string, err error) (procKey, error) {
		return procKey{}, fmt.Errorf("keyring: /proc/keys line %q: %s: %w", line, what, err)
	}
	serial, err := strconv.ParseUint(f[0], 16, 32)
	if err != nil {
		return bad("serial", err)
	}
	usage, err := strconv.Atoi(f[2])
	if err != nil {
		return bad("usage", err)
	}
	perm, err := strconv.ParseUint(f[4], 16, 32)
	if err != nil {
		return bad("permissions", err)
	}
	uid, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		return bad("uid", err)
	}
	gid, err := strconv.ParseInt(f[6], 10, 64)
	if err != nil {
		return bad("gid", err)
	}
	return procKey{
		Serial:      Serial(int32(uint32(serial))),
		Flags:       f[1],
		Usage:       usage,
		Timeout:     f[3],
		Perm:        uint32(perm),
		UID:         uid,
		GID:         gid,
		Type:        f[7],
		Description: strings.TrimLeft(rest, " "),
	}, nil
}

// isKeyringNamed reports whether k is the keyring called name, with the
// rule of keyutils' find_key_by_type_and_desc: the description starts with
// name, followed by ':' (the key count) or nothing.
func (k procKey) isKeyringNamed(name string) bool {
	if k.Type != "keyring" {
		return false
	}
	after, ok := strings.CutPrefix(k.Description, name)
	return ok && (after == "" || after[0] == ':')
}

// findKeyring returns the first trusted keyring called name in a
// /proc/keys listing: one owned by root (uid 0), or one possessed reports
// the caller possesses. Any user may create a keyring called ".nvme" and
// let everyone view it; taking that one would hand a stranger's keys to
// the kernel (keyring squatting). If only untrusted keyrings have the
// name, the error is an *UntrustedKeyringError for the first of them.
// Lines that do not parse are skipped: the format is the kernel's, and one
// odd line should not hide the keyring.
func findKeyring(r io.Reader, name string, possessed func(Serial) bool) (Serial, error) {
	if name == "" {
		return 0, fmt.Errorf("keyring: empty keyring name: %w", ErrNotFound)
	}
	var refused *UntrustedKeyringError
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		k, err := parseProcKeysLine(sc.Text())
		if err != nil || !k.isKeyringNamed(name) {
			continue
		}
		if k.UID == 0 || possessed(k.Serial) {
			return k.Serial, nil
		}
		if refused == nil {
			refused = &UntrustedKeyringError{Name: name, Serial: k.Serial, UID: k.UID}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("keyring: reading %s: %w", procKeysPath, err)
	}
	if refused != nil {
		return 0, refused
	}
	return 0, fmt.Errorf("keyring: no keyring %q in %s: %w", name, procKeysPath, ErrNotFound)
}

func findKeyringIn(path, name string, possessed func(Serial) bool) (Serial, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("keyring: %w", err)
	}
	defer f.Close()
	return findKeyring(f, name, possessed)
}

// ErrUntrustedKeyring matches an *UntrustedKeyringError.
var ErrUntrustedKeyring = errors.New("keyring: untrusted keyring")

// An UntrustedKeyringError means the only keyrings with a configured name
// belong to another user and are not possessed by this process: they were
// refused. A daemon logs it; it may mean someone is squatting the name.
type UntrustedKeyringError struct {
	Name   string
	Serial Serial
	UID    int64
}

func (e *UntrustedKeyringError) Error() string {
	return fmt.Sprintf("keyring: refusing keyring %q (serial %v): owned by uid %d, not root, and not possessed by this process (another user's keyring of the same name?)",
		e.Name, e.Serial, e.UID)
}

func (e *UntrustedKeyringError) Is(target error) bool { return target == ErrUntrustedKeyring }
