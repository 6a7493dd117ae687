package handshake

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/keyring"
)

// KTLS installs keys with the kernel's TLS ULP.
type KTLS struct{}

// Install implements Installer with ktls.Install.
func (KTLS) Install(fd int, tx, rx ktls.Keys, o ktls.Options) error {
	return ktls.Install(fd, tx, rx, o)
}

// SystemKeyring is the kernel keyring. The daemon calls Share on the
// accept thread, whose process keyring the kernel links each consumer's
// keyring into at ACCEPT, and every other method on the key thread:
// Attach links the accept thread's process keyring (once, for good), the
// policy's keyrings and the request's KEYRING (on kernels that send it)
// into the key thread's thread keyring. Keys found through them are
// possessed, which reading NVMe PSKs requires (nvme-cli grants their
// owner only "view").
type SystemKeyring struct {
	// PSKType is the key type PSKs are searched by; "" means "psk",
	// the type nvme-cli and the kernel's nvme-keyring use.
	PSKType string
	// find resolves a keyring name; nil means keyring.FindKeyring,
	// which refuses a keyring that root neither owns nor possesses.
	find func(name string) (keyring.Serial, error)

	mu      sync.Mutex
	serials map[string]keyring.Serial
	scanned time.Time
	// refs counts the requests that need each link: requests share the
	// thread keyring, so a link goes only when the last one is done.
	refs map[keyring.Serial]int
}

// Attach implements Keyring.
func (k *SystemKeyring) Attach(rings []config.Keyring, requestRing int32) ([]int32, func(), error) {
	want := make([]keyring.Serial, 0, len(rings)+1)
	var errs []error
	for _, r := range rings {
		serial := keyring.Serial(r.Serial)
		if r.Name != "" {
			var err error
			if serial, err = k.resolve(r.Name); err != nil {
				// Not loaded (e.g. .nfs without NFS) is no error; a
				// keyring of that name that another user made is
				// (keyring squatting), and the daemon logs it.
				if errors.Is(err, keyring.ErrUntrustedKeyring) {
					errs = append(errs, err)
				}
				continue
			}
		}
		want = append(want, serial)
	}
	if requestRing != 0 {
		want = append(want, keyring.Serial(requestRing))
	}
	var linked []keyring.Serial
	var attached []int32
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refs == nil {
		k.refs = map[keyring.Serial]int{}
	}
	for _, s := range want {
		if k.refs[s] == 0 {
			if err := keyring.Link(s, keyring.Thread); err != nil {
				errs = append(errs, err)
				k.forgetLocked(s) // maybe gone and recreated: re-resolve next time
				continue
			}
		}
		k.refs[s]++
		linked = append(linked, s)
		attached = append(attached, int32(s))
	}
	detach := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, s := range linked {
			if k.refs[s]--; k.refs[s] == 0 {
				delete(k.refs, s)
				keyring.Unlink(s, keyring.Thread)
			}
		}
	}
	return attached, detach, errors.Join(errs...)
}

// errNotScanned: a name was looked for less than a second ago.
var errNotScanned = errors.New("handshake: keyring looked up less than a second ago")

// resolve maps a keyring name to its serial through /proc/keys, caching
// what it finds; names not found are looked for again at most once a
// second.
func (k *SystemKeyring) resolve(name string) (keyring.Serial, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.serials[name]; ok {
		return s, nil
	}
	if time.Since(k.scanned) < time.Second {
		return 0, errNotScanned
	}
	k.scanned = time.Now()
	find := k.find
	if find == nil {
		find = keyring.FindKeyring
	}
	s, err := find(name)
	if err != nil {
		return 0, err
	}
	if k.serials == nil {
		k.serials = map[string]keyring.Serial{}
	}
	k.serials[name] = s
	return s, nil
}

// forgetLocked drops a cached name whose serial failed to link.
func (k *SystemKeyring) forgetLocked(serial keyring.Serial) {
	for name, s := range k.serials {
		if s == serial {
			delete(k.serials, name)
			k.scanned = time.Time{}
		}
	}
}

// ReadPSK implements Keyring.
func (k *SystemKeyring) ReadPSK(serial int32) (string, []byte, error) {
	d, err := keyring.Describe(keyring.Serial(serial))
	if err != nil {
		return "", nil, err
	}
	key, err := keyring.Read(keyring.Serial(serial))
	if err != nil {
		return "", nil, err
	}
	return d.Description, key, nil
}

// SearchPSK implements Keyring: each of the request's keyrings in turn.
// The keyrings are reachable through the thread keyring, so what is
// found is possessed and readable.
func (k *SystemKeyring) SearchPSK(rings []int32, identity string) (int32, []byte, error) {
	typ := k.PSKType
	if typ == "" {
		typ = "psk"
	}
	var firstErr error
	for _, ring := range rings {
		serial, err := keyring.Search(keyring.Serial(ring), typ, identity)
		if err != nil {
			if firstErr == nil || errors.Is(firstErr, keyring.ErrNotFound) {
				firstErr = err
			}
			continue
		}
		key, err := keyring.Read(serial)
		if err != nil {
			return 0, nil, err
		}
		return int32(serial), key, nil
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("no keyring to search for %q: %w", identity, keyring.ErrNotFound)
	}
	return 0, nil, firstErr
}

// Share implements Keyring: it creates the calling thread's process
// keyring if need be and lets its owner (the daemon's user) search, read
// and link it without possessing it, so that the key thread can link it.
func (k *SystemKeyring) Share() (int32, error) {
	ring, err := keyring.GetID(keyring.Process, true)
	if err != nil {
		return 0, err
	}
	perm := keyring.PermPossessorAll | keyring.PermUserView | keyring.PermUserRead |
		keyring.PermUserSearch | keyring.PermUserLink
	if err := keyring.SetPerm(ring, perm); err != nil {
		return 0, err
	}
	return int32(ring), nil
}

// Read implements Keyring.
func (k *SystemKeyring) Read(serial int32) ([]byte, error) {
	return keyring.Read(keyring.Serial(serial))
}
