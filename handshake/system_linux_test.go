package handshake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/keyring"
)

// skipUnlessCI skips a test that needs what this host lacks; under CI
// (CI=true), where the keyring is expected to work, it fails instead.
func skipUnlessCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// threadRingMembers lists the keys linked into the calling thread's
// thread keyring. It runs on a locked thread: it reports with t.Error.
func threadRingMembers(t *testing.T) []keyring.Serial {
	b, err := keyring.Read(keyring.Thread)
	if errors.Is(err, syscall.ENOKEY) {
		return nil
	}
	if err != nil {
		t.Error(err)
		return nil
	}
	var out []keyring.Serial
	for len(b) >= 4 {
		out = append(out, keyring.Serial(int32(binary.NativeEndian.Uint32(b))))
		b = b[4:]
	}
	return out
}

// TestSystemKeyring runs against the host's real keyring, on one thread
// as the daemon's key thread does: links are shared by requests and go
// only with the last one, and PSKs are found by description through them.
func TestSystemKeyring(t *testing.T) {
	th := startThread()
	defer th.stop()
	var ring, key keyring.Serial
	name := fmt.Sprintf("tlshd-go-test-%d", os.Getpid())
	var ringErr, keyErr error
	th.do(func() {
		if ring, ringErr = keyring.Add("keyring", name, nil, keyring.User); ringErr == nil {
			key, keyErr = keyring.Add("user", "NVMe0R01 host subsys", []byte("0123456789abcdef0123456789abcdef"), ring)
		}
	})
	// Skip and fail here, on the test's goroutine: t.Skip on the
	// thread's would end that goroutine, not the test.
	if ringErr != nil {
		skipUnlessCI(t, "cannot make a keyring here: %v", ringErr)
	}
	defer th.do(func() { keyring.Unlink(ring, keyring.User) })
	if keyErr != nil {
		t.Fatal(keyErr)
	}

	sk := &SystemKeyring{PSKType: "user"}
	rings := []config.Keyring{{Name: name}, {Name: ".no-such-keyring"}}
	// On the thread's goroutine t.Fatal and t.Skip would end that
	// goroutine, not the test: report with t.Error and return.
	th.do(func() {
		attached, detach1, err := sk.Attach(rings, 0)
		if err != nil {
			t.Error(err)
			return
		}
		if len(attached) != 1 || keyring.Serial(attached[0]) != ring {
			t.Errorf("attached %v, want [%v] (the missing keyring is skipped)", attached, ring)
		}
		_, detach2, err := sk.Attach(rings, 0)
		if err != nil {
			t.Error(err)
			return
		}
		if !slices.Contains(threadRingMembers(t), ring) {
			t.Error("keyring not linked into the thread keyring")
			return
		}
		serial, payload, err := sk.SearchPSK(attached, "NVMe0R01 host subsys")
		if err != nil || keyring.Serial(serial) != key || !bytes.Equal(payload, []byte("0123456789abcdef0123456789abcdef")) {
			t.Errorf("SearchPSK = %d %q %v", serial, payload, err)
			return
		}
		id, _, err := sk.ReadPSK(int32(key))
		if err != nil || id != "NVMe0R01 host subsys" {
			t.Errorf("ReadPSK = %q %v", id, err)
		}
		if p, err := sk.Read(int32(key)); err != nil || !bytes.Equal(p, []byte("0123456789abcdef0123456789abcdef")) {
			t.Errorf("Read = %q %v", p, err)
		}
		if _, _, err := sk.SearchPSK(attached, "NVMe0R01 nobody"); !errors.Is(err, keyring.ErrNotFound) {
			t.Errorf("unknown identity: %v", err)
		}
		detach1()
		if !slices.Contains(threadRingMembers(t), ring) {
			t.Error("the first detach removed a link another request still holds")
		}
		detach2()
		if slices.Contains(threadRingMembers(t), ring) {
			t.Error("the last detach left the link")
		}
	})
}

// TestShareProcessKeyring: a key reachable only from the accept thread's
// process keyring (where the kernel links a consumer's keyring at ACCEPT)
// is readable from the key thread once Share and Attach have run; a
// thread that did neither cannot read it.
func TestShareProcessKeyring(t *testing.T) {
	accept, keys, other := startThread(), startThread(), startThread()
	defer accept.stop()
	defer keys.stop()
	defer other.stop()
	sk := &SystemKeyring{PSKType: "user"}
	var shared int32
	var key keyring.Serial
	var shareErr, setupErr error
	accept.do(func() {
		if shared, shareErr = sk.Share(); shareErr != nil {
			return
		}
		// What the kernel does at ACCEPT: link the consumer's keyring.
		ring, err := keyring.Add("keyring", "consumer", nil, keyring.Process)
		if err != nil {
			setupErr = err
			return
		}
		if key, err = keyring.Add("user", "NVMe0R01 shared", []byte("secret"), ring); err != nil {
			setupErr = err
			return
		}
		// nvme-cli's keys grant their owner only "view": possession needed.
		setupErr = keyring.SetPerm(key, keyring.PermPossessorAll|keyring.PermUserView)
	})
	if shareErr != nil {
		skipUnlessCI(t, "no process keyring here: %v", shareErr)
	}
	if setupErr != nil {
		t.Error(setupErr)
		return
	}
	other.do(func() {
		if _, err := keyring.Read(key); err == nil {
			t.Error("a thread without the link read the key")
		}
	})
	keys.do(func() { // t.Error, not t.Fatal: not the test's goroutine
		attached, _, err := sk.Attach([]config.Keyring{{Serial: shared}}, 0)
		if err != nil {
			t.Error(err)
			return
		}
		serial, payload, err := sk.SearchPSK(attached, "NVMe0R01 shared")
		if err != nil || keyring.Serial(serial) != key || string(payload) != "secret" {
			t.Errorf("SearchPSK = %d %q %v", serial, payload, err)
			return
		}
		if _, p, err := sk.ReadPSK(int32(key)); err != nil || string(p) != "secret" {
			t.Errorf("ReadPSK = %q %v", p, err)
		}
	})
}

// TestRaiseAcceptPriority: the accept thread gets what raiseAcceptPriority
// reports, with RESET_ON_FORK so nothing it clones inherits it. The
// thread is thrown away afterwards (the goroutine ends locked).
func TestRaiseAcceptPriority(t *testing.T) {
	type result struct {
		got  string
		attr *unix.SchedAttr
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with us
		got := raiseAcceptPriority()
		attr, err := unix.SchedGetAttr(0, 0)
		ch <- result{got, attr, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("accept thread: %q (policy %d, priority %d, nice %d, flags %#x)", r.got, r.attr.Policy, r.attr.Priority, r.attr.Nice, r.attr.Flags)
	switch r.got {
	case "nice -10":
		if r.attr.Policy != unix.SCHED_NORMAL || r.attr.Nice != -10 {
			t.Errorf("reported %q, thread has policy %d nice %d", r.got, r.attr.Policy, r.attr.Nice)
		}
	case "":
		if os.Geteuid() == 0 {
			t.Errorf("root could not raise the thread's priority: policy %d nice %d", r.attr.Policy, r.attr.Nice)
		}
		return
	default:
		t.Fatalf("unexpected report %q", r.got)
	}
	if r.attr.Flags&unix.SCHED_FLAG_RESET_ON_FORK == 0 {
		t.Errorf("RESET_ON_FORK not set (flags %#x): cloned threads would inherit %s", r.attr.Flags, r.got)
	}
}

// TestAttachRefusesSquattedKeyring: a policy keyring whose name another
// user's keyring took is not linked, and Attach's error (which the daemon
// logs) says so; a name that is simply not loaded is no error.
func TestAttachRefusesSquattedKeyring(t *testing.T) {
	k := &SystemKeyring{find: func(name string) (keyring.Serial, error) {
		if name == ".nvme" {
			return 0, &keyring.UntrustedKeyringError{Name: name, Serial: 1234, UID: 1000}
		}
		return 0, keyring.ErrNotFound
	}}
	attached, detach, err := k.Attach([]config.Keyring{{Name: ".nvme"}, {Name: ".nfs"}}, 0)
	if detach != nil {
		defer detach()
	}
	if len(attached) != 0 {
		t.Errorf("attached %v, want nothing", attached)
	}
	if !errors.Is(err, keyring.ErrUntrustedKeyring) || !strings.Contains(err.Error(), ".nvme") {
		t.Errorf("Attach() error = %v, want the squatted .nvme named", err)
	}
	if strings.Contains(fmt.Sprint(err), ".nfs") {
		t.Errorf("Attach() error = %v names .nfs, which is only not loaded", err)
	}
}
