package genl

import (
	"bufio"
	"compress/gzip"
	"errors"
	"os"
	"testing"
)

// strict reports whether an undecided host is a failure: under CI
// (CI=true, or TLSHD_REQUIRE_INTEROP=1 as tests/run sets it).
func strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("TLSHD_REQUIRE_INTEROP") == "1"
}

// expectFamily says whether this host's kernel must have the handshake
// family, from evidence other than the code under test:
// TLSHD_EXPECT_HANDSHAKE=1 or 0 if set, else CONFIG_NET_HANDSHAKE in
// /proc/config.gz (off on the development and CI hosts' 6.18).
func expectFamily(t *testing.T) (want, ok bool) {
	t.Helper()
	switch os.Getenv("TLSHD_EXPECT_HANDSHAKE") {
	case "1":
		return true, true
	case "0":
		return false, true
	}
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if zr, err := gzip.NewReader(f); err == nil {
			found := false
			sc := bufio.NewScanner(zr)
			for sc.Scan() {
				switch sc.Text() {
				case "CONFIG_NET_HANDSHAKE=y":
					return true, true
				case "CONFIG_NET=y":
					found = true // a real config; NET_HANDSHAKE absent means off
				}
			}
			if sc.Err() == nil && found {
				return false, true
			}
		}
	}
	if strict() {
		t.Fatal("cannot tell whether this kernel has net/handshake: set TLSHD_EXPECT_HANDSHAKE=0 or 1")
	}
	return false, false
}

// TestDialListenOnThisHost opens the production sockets against the
// running kernel: both work where it has net/handshake, and both fail with
// ErrNoFamily where it has not.
func TestDialListenOnThisHost(t *testing.T) {
	want, known := expectFamily(t)
	c, derr := Dial()
	if derr == nil {
		defer c.Close()
	}
	l, lerr := Listen()
	if lerr == nil {
		defer l.Close()
	}
	switch {
	case !known:
		t.Logf("host undetermined: Dial() = %v, Listen() = %v", derr, lerr)
	case want:
		if derr != nil || lerr != nil {
			t.Fatalf("this kernel has net/handshake, but Dial() = %v, Listen() = %v", derr, lerr)
		}
		if caps := c.Capabilities(); !caps.Probed || !caps.DoneAttrs.Has(doneSockFD) {
			t.Errorf("Capabilities() = %+v, want a probed DONE policy with SOCKFD", caps)
		}
	default:
		if !errors.Is(derr, ErrNoFamily) || !errors.Is(lerr, ErrNoFamily) {
			t.Fatalf("this kernel has no net/handshake, but Dial() = %v, Listen() = %v; want ErrNoFamily", derr, lerr)
		}
	}
}
