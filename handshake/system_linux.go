package handshake

import (
	"errors"
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

// SystemKeyring is the kernel keyring. Attach links the request's
// keyrings into the calling thread's thread keyring, which dies with the
// request's thread; keys found through it are possessed, which reading
// NVMe PSKs requires (nvme-cli grants their owner only "view").
type SystemKeyring struct {
	// PSKType is the key type PSKs are searched by; "" means "psk",
	// the type nvme-cli and the kernel's nvme-keyring use.
	PSKType string

	mu      sync.Mutex
	serials map[string]keyring.Serial
	scanned time.Time
}

// Attach implements Keyring.
func (k *SystemKeyring) Attach(rings []config.Keyring, requestRing int32) (func(), error) {
	var linked []keyring.Serial
	var errs []error
	for _, r := range rings {
		serial := keyring.Serial(r.Serial)
		if r.Name != "" {
			var ok bool
			if serial, ok = k.resolve(r.Name); !ok {
				continue // not loaded (e.g. .nfs without NFS): nothing to link
			}
		}
		if err := keyring.Link(serial, keyring.Thread); err != nil {
			if r.Name != "" {
				k.forget(r.Name) // maybe gone and recreated: re-resolve next time
			}
			errs = append(errs, err)
			continue
		}
		linked = append(linked, serial)
	}
	if requestRing != 0 {
		if err := keyring.Link(keyring.Serial(requestRing), keyring.Thread); err != nil {
			errs = append(errs, err)
		} else {
			linked = append(linked, keyring.Serial(requestRing))
		}
	}
	detach := func() {
		for _, s := range linked {
			keyring.Unlink(s, keyring.Thread)
		}
	}
	return detach, errors.Join(errs...)
}

// resolve maps a keyring name to its serial through /proc/keys, caching
// what it finds; names not found are looked for again at most once a
// second.
func (k *SystemKeyring) resolve(name string) (keyring.Serial, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.serials[name]; ok {
		return s, true
	}
	if time.Since(k.scanned) < time.Second {
		return 0, false
	}
	k.scanned = time.Now()
	s, err := keyring.FindKeyring(name)
	if err != nil {
		return 0, false
	}
	if k.serials == nil {
		k.serials = map[string]keyring.Serial{}
	}
	k.serials[name] = s
	return s, true
}

func (k *SystemKeyring) forget(name string) {
	k.mu.Lock()
	delete(k.serials, name)
	k.scanned = time.Time{}
	k.mu.Unlock()
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

// SearchPSK implements Keyring: the thread keyring (what Attach linked),
// then the process keyring (where the kernel linked the consumer's
// keyring at ACCEPT).
func (k *SystemKeyring) SearchPSK(identity string) (int32, []byte, error) {
	typ := k.PSKType
	if typ == "" {
		typ = "psk"
	}
	var firstErr error
	for _, ring := range []keyring.Serial{keyring.Thread, keyring.Process} {
		serial, err := keyring.Search(ring, typ, identity)
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
	return 0, nil, firstErr
}

// Read implements Keyring.
func (k *SystemKeyring) Read(serial int32) ([]byte, error) {
	return keyring.Read(keyring.Serial(serial))
}
