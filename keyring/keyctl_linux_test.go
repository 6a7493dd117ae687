package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var ringCount atomic.Int32

// strict reports whether a skip is a failure: under CI (CI=true, or
// TLSHD_REQUIRE_INTEROP=1 as tests/run sets it), where keyctl works and
// the tests run as root.
func strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("TLSHD_REQUIRE_INTEROP") == "1"
}

// freshKeyring locks the test's goroutine to its OS thread for good (the
// thread, with its thread keyring, is destroyed when the test ends) and
// returns a new keyring linked only into that thread keyring. Nothing the
// test creates is reachable from the session keyring, so nothing leaks
// into the host's keyrings even if the test dies.
func freshKeyring(t *testing.T) (ring Serial, name string) {
	t.Helper()
	runtime.LockOSThread()
	if _, err := GetID(Thread, true); errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		if strict() {
			t.Fatalf("keyctl unavailable under CI: %v", err)
		}
		t.Skipf("keyctl unavailable: %v", err)
	} else if err != nil {
		t.Fatalf("creating the thread keyring: %v", err)
	}
	name = fmt.Sprintf("tlshd-go-test-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), ringCount.Add(1))
	ring, err := Add("keyring", name, nil, Thread)
	if err != nil {
		t.Fatalf("creating a test keyring: %v", err)
	}
	t.Cleanup(func() {
		if err := Unlink(ring, Thread); err != nil {
			t.Errorf("unlinking the test keyring: %v", err)
		}
	})
	return ring, name
}

func TestAddReadDescribe(t *testing.T) {
	ring, _ := freshKeyring(t)
	const desc = "NVMe0R01 host;with;semicolons subsys"
	payload := []byte("0123456789abcdef0123456789abcdef")
	key, err := Add("user", desc, payload, ring)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Read(key)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("Read() = %q, want %q", got, payload)
	}
	d, err := Describe(key)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	want := Description{Type: "user", UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Perm: 0x3f010000, Description: desc}
	if d != want {
		t.Errorf("Describe() = %+v, want %+v", d, want)
	}

	// Add on an existing type and description updates the key in place.
	again, err := Add("user", desc, []byte("new"), ring)
	if err != nil || again != key {
		t.Fatalf("second Add() = %v, %v; want %v", again, err, key)
	}
	if got, err := Read(key); err != nil || string(got) != "new" {
		t.Errorf("Read() after update = %q, %v", got, err)
	}
}

func TestReadLarge(t *testing.T) {
	ring, _ := freshKeyring(t)
	payload := bytes.Repeat([]byte("0123456789"), 3000) // user keys hold up to 32767 bytes
	key, err := Add("user", "large", payload, ring)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Read(key)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Read() = %d bytes, %v; want %d bytes", len(got), err, len(payload))
	}
}

func TestSearch(t *testing.T) {
	ring, _ := freshKeyring(t)
	key, err := Add("user", "needle", []byte("x"), ring)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Search(ring, "user", "needle"); err != nil || got != key {
		t.Errorf("Search() = %v, %v; want %v", got, err, key)
	}
	// Searching the thread keyring recurses into ring.
	if got, err := Search(Thread, "user", "needle"); err != nil || got != key {
		t.Errorf("Search(@t) = %v, %v; want %v", got, err, key)
	}
	// Descriptions match exactly, not by prefix, and one with a NUL is
	// not cut there (what a C string would do).
	for _, desc := range []string{"needl", "needle2", "Needle", "needle\x00", "needle\x00x"} {
		_, err := Search(ring, "user", desc)
		if !errors.Is(err, ErrNotFound) || !errors.Is(err, unix.ENOKEY) {
			t.Errorf("Search(%q) = %v, want ErrNotFound and ENOKEY", desc, err)
		}
	}
	if _, err := Search(ring, "logon", "needle"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Search with another type = %v, want ErrNotFound", err)
	}
}

func TestLinkUnlink(t *testing.T) {
	ring, _ := freshKeyring(t)
	key, err := Add("user", "linked", []byte("x"), ring)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Add("keyring", "other", nil, ring)
	if err != nil {
		t.Fatal(err)
	}
	if err := Link(key, other); err != nil {
		t.Fatalf("Link: %v", err)
	}
	if got, err := Search(other, "user", "linked"); err != nil || got != key {
		t.Errorf("Search after Link = %v, %v; want %v", got, err, key)
	}
	if err := Unlink(key, other); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	if _, err := Search(other, "user", "linked"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Search after Unlink = %v, want ErrNotFound", err)
	}
	if err := Unlink(key, other); !errors.Is(err, unix.ENOENT) {
		t.Errorf("second Unlink = %v, want ENOENT", err)
	}
}

func TestGetID(t *testing.T) {
	ring, _ := freshKeyring(t)
	tid, err := GetID(Thread, false)
	if err != nil || tid <= 0 {
		t.Fatalf("GetID(@t) = %v, %v", tid, err)
	}
	if got, err := Search(tid, "keyring", mustDescribe(t, ring).Description); err != nil || got != ring {
		t.Errorf("the test keyring is not in the thread keyring %v: %v, %v", tid, got, err)
	}
	// A thread keyring is the thread's own: another thread gets another.
	other := make(chan Serial, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its keyring
		id, _ := GetID(Thread, true)
		other <- id
	}()
	if id := <-other; id == tid || id <= 0 {
		t.Errorf("another thread's thread keyring = %v, ours %v", id, tid)
	}
}

func mustDescribe(t *testing.T, id Serial) Description {
	t.Helper()
	d, err := Describe(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPossessionIsPerThread shows why each request is served on one
// locked thread: a key reachable only from this thread's keyrings, with
// the permissions nvme-cli gives PSKs (possessor everything, owner VIEW),
// is readable here and not from another thread, even by root.
func TestPossessionIsPerThread(t *testing.T) {
	ring, _ := freshKeyring(t)
	key, err := Add("user", "possessed", []byte("secret"), ring)
	if err != nil {
		t.Fatal(err)
	}
	if d := mustDescribe(t, key); d.Perm != 0x3f010000 {
		t.Fatalf("permissions %08x, want 3f010000 (possessor all, user view)", d.Perm)
	}
	if _, err := Read(key); err != nil {
		t.Fatalf("Read on the owning thread: %v", err)
	}
	type result struct {
		d   Description
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		_, err := Read(key)
		d, derr := Describe(key)
		if derr != nil {
			err = derr
		}
		res <- result{d, err}
	}()
	r := <-res
	if !errors.Is(r.err, unix.EACCES) {
		t.Errorf("Read from another thread = %v, want EACCES", r.err)
	}
}

func TestFindKeyring(t *testing.T) {
	ring, name := freshKeyring(t)
	got, err := FindKeyring(name)
	if err != nil || got != ring {
		t.Errorf("FindKeyring(%q) = %v, %v; want %v", name, got, err, ring)
	}
	if _, err := FindKeyring(name + "-missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindKeyring(missing) = %v, want ErrNotFound", err)
	}
}

func TestErrorsNameTheSerial(t *testing.T) {
	freshKeyring(t)
	const bogus = Serial(0x7ffffff0)
	_, err := Read(bogus)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, unix.ENOKEY) {
		t.Fatalf("Read(bogus) = %v, want ErrNotFound and ENOKEY", err)
	}
	if want := "keyring: reading key 2147483632: "; !bytes.HasPrefix([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not start with %q", err, want)
	}
	if _, err := Describe(bogus); !errors.Is(err, ErrNotFound) {
		t.Errorf("Describe(bogus) = %v, want ErrNotFound", err)
	}
}

// squatUID is the second user of TestKeyringSquatting: nobody.
const squatUID = 65534

// TestKeyringSquattingHelper is not a test: TestKeyringSquatting runs the
// test binary again with TLSHD_SQUAT_KEYRING set, and this then becomes
// another user (setresuid on every thread) and creates a keyring of that
// name in its user keyring, which outlives the process, readable by all,
// and prints its serial.
func TestKeyringSquattingHelper(t *testing.T) {
	name := os.Getenv("TLSHD_SQUAT_KEYRING")
	if name == "" {
		return
	}
	if err := syscall.Setresgid(squatUID, squatUID, squatUID); err != nil {
		fmt.Println("setresgid:", err)
		os.Exit(2)
	}
	if err := syscall.Setresuid(squatUID, squatUID, squatUID); err != nil {
		fmt.Println("setresuid:", err)
		os.Exit(2)
	}
	id, err := Add("keyring", name, nil, User)
	if err == nil {
		err = SetPerm(id, 0x3f3f3f3f)
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	fmt.Printf("serial %d\n", id)
	os.Exit(0)
}

// TestKeyringSquatting: a keyring that another user created with the
// name the policy names, and let everyone view, is refused with an error
// that names its owner; root's own keyring of that name is found even
// with the squatter's present; and a keyring of another owner that this
// thread possesses is accepted.
func TestKeyringSquatting(t *testing.T) {
	if os.Geteuid() != 0 {
		if strict() {
			t.Fatal("TestKeyringSquatting needs root (setresuid, KEYCTL_CHOWN); CI runs as root")
		}
		t.Skip("needs root")
	}
	ring, name := freshKeyring(t) // locks the thread; root's own keyring
	squat := name + "-squat"
	cmd := exec.Command(os.Args[0], "-test.run=^TestKeyringSquattingHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TLSHD_SQUAT_KEYRING="+squat)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("squatter: %v\n%s", err, out)
	}
	var serial Serial
	if _, err := fmt.Sscanf(string(out), "serial %d", &serial); err != nil {
		t.Fatalf("squatter said %q", out)
	}
	t.Cleanup(func() {
		if _, err := unix.KeyctlInt(unix.KEYCTL_INVALIDATE, int(serial), 0, 0, 0); err != nil {
			t.Errorf("invalidating the squatter's keyring: %v", err)
		}
	})
	if d := mustDescribe(t, serial); d.UID != squatUID || d.Type != "keyring" {
		t.Fatalf("squatter's keyring: %+v", d)
	}

	// Only the squatter's keyring has the name: refused.
	_, err = FindKeyring(squat)
	var ue *UntrustedKeyringError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUntrustedKeyring) {
		t.Fatalf("FindKeyring(squatted name) = %v, want an *UntrustedKeyringError", err)
	}
	if ue.Serial != serial || ue.UID != squatUID || ue.Name != squat {
		t.Errorf("error = %+v, want serial %v, uid %d", *ue, serial, squatUID)
	}

	// Root's keyring of the same name is taken, wherever the squatter's
	// is listed.
	mine, err := Add("keyring", squat, nil, ring)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := FindKeyring(squat); err != nil || got != mine {
		t.Errorf("FindKeyring with root's and the squatter's = %v, %v; want root's %v", got, err, mine)
	}
	if err := Unlink(mine, ring); err != nil {
		t.Fatal(err)
	}

	// Another owner's keyring that this thread possesses is accepted.
	owned, err := Add("keyring", name+"-owned", nil, ring)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_CHOWN, int(owned), squatUID, -1, 0); err != nil {
		t.Fatalf("KEYCTL_CHOWN: %v", err)
	}
	if got, err := FindKeyring(name + "-owned"); err != nil || got != owned {
		t.Errorf("FindKeyring(possessed, uid %d) = %v, %v; want %v", squatUID, got, err, owned)
	}
}
