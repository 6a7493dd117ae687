package session

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/keyring"
)

// testKeyring opens a Keyring of its own name on the calling (locked)
// thread and destroys it when the test ends.
func testKeyring(t *testing.T) *Keyring {
	t.Helper()
	k := &Keyring{Name: fmt.Sprintf("tlshd-go:sessions-test-%d-%d", os.Getpid(), time.Now().UnixNano()), TTL: time.Hour}
	if err := k.Open(); err != nil {
		if (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EACCES)) && os.Getenv("CI") != "true" {
			t.Skipf("no keyrings here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { invalidate(keyring.Serial(k.Ring())) })
	return k
}

func TestKeyring(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	k := testKeyring(t)
	storeContract(t, k)

	id, err := k.Put(testState(tls13.TLS_AES_128_GCM_SHA256, 32))
	if err != nil {
		t.Fatal(err)
	}
	d, err := keyring.Describe(keyring.Serial(id))
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != "user" || d.Perm != keyPerm || !strings.HasPrefix(d.Description, keyPrefix) {
		t.Errorf("session key %+v", d)
	}
	if rd, err := keyring.Describe(keyring.Serial(k.Ring())); err != nil || rd.Perm != ringPerm {
		t.Errorf("ring %+v %v", rd, err)
	}
	// The kernel reclaims it: it expires.
	if exp := procKeysExpiry(t, id); exp == "perm" || exp == "" {
		t.Errorf("session key expiry %q, want a timeout", exp)
	}

	// A daemon restarted finds it: another thread, with a thread
	// keyring of its own, opens the ring by name.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread and its keyring go
		k2 := &Keyring{Name: k.Name}
		s, err := k2.Get(id)
		if err == nil && (s.TXGen != 7 || k2.Ring() != k.Ring()) {
			err = fmt.Errorf("got %+v in ring %d, want generation 7 in %d", s, k2.Ring(), k.Ring())
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// A key that is not a session is not found, though readable.
	other, err := keyring.Add("user", "not-a-session", []byte{1, 2, 3}, keyring.Serial(k.Ring()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Get(uint32(other)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(foreign key): %v", err)
	}
	invalidate(other)

	// A ring invalidated (by an administrator) and not yet collected is
	// replaced, not an error.
	if err := invalidate(keyring.Serial(k.Ring())); err != nil {
		t.Fatal(err)
	}
	k3 := &Keyring{Name: k.Name}
	if err := k3.Open(); err != nil {
		t.Fatalf("Open after the ring was invalidated: %v", err)
	}
	if k3.Ring() == k.Ring() {
		t.Error("Open took the invalidated ring")
	}
	invalidate(keyring.Serial(k3.Ring()))
}

// procKeysExpiry returns the expiry column of key id in /proc/keys.
func procKeysExpiry(t *testing.T, id uint32) string {
	f, err := os.Open("/proc/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := fmt.Sprintf("%08x", id)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 3 && f[0] == want {
			return f[3]
		}
	}
	return ""
}
