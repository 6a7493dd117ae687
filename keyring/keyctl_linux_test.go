package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var ringCount atomic.Int32

// freshKeyring locks the test's goroutine to its OS thread for good (the
// thread, with its thread keyring, is destroyed when the test ends) and
// returns a new keyring linked only into that thread keyring. Nothing the
// test creates is reachable from the session keyring, so nothing leaks
// into the host's keyrings even if the test dies.
func freshKeyring(t *testing.T) (ring Serial, name string) {
	t.Helper()
	runtime.LockOSThread()
	if _, err := GetID(Thread, true); errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
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
