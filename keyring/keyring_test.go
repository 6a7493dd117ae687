package keyring

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSerialString(t *testing.T) {
	for s, want := range map[Serial]string{
		Thread: "@t", Process: "@p", Session: "@s", User: "@u", UserSession: "@us",
		0x3a2b1c0d: "975903757", -6: "-6",
	} {
		if got := s.String(); got != want {
			t.Errorf("Serial(%d).String() = %q, want %q", int32(s), got, want)
		}
	}
}

func TestParseDescription(t *testing.T) {
	tests := []struct {
		in      string
		want    Description
		wantErr bool
	}{
		{
			in:   "psk;0;0;3f010000;NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6 nqn.2014-08.org.nvmexpress:uuid:36ebf5a9-1df9-47b3-a6d0-e9ba32e428a2",
			want: Description{Type: "psk", Perm: 0x3f010000, Description: "NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6 nqn.2014-08.org.nvmexpress:uuid:36ebf5a9-1df9-47b3-a6d0-e9ba32e428a2"},
		},
		{
			in:   "keyring;1000;100;3f030000;.nvme",
			want: Description{Type: "keyring", UID: 1000, GID: 100, Perm: 0x3f030000, Description: ".nvme"},
		},
		{
			in:   "user;0;0;3f010000;a;b;;c",
			want: Description{Type: "user", Perm: 0x3f010000, Description: "a;b;;c"},
		},
		{
			in:   "user;-1;4294967295;0;",
			want: Description{Type: "user", UID: 0xffffffff, GID: 0xffffffff},
		},
		{in: "user;0;0;3f010000", wantErr: true},
		{in: ";0;0;0;x", wantErr: true},
		{in: "user;x;0;0;x", wantErr: true},
		{in: "user;0;-;0;x", wantErr: true},
		{in: "user;0;0;xyz;x", wantErr: true},
		{in: "user;0;0;100000000;x", wantErr: true},
		{in: "user;4294967296;0;0;x", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseDescription(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseDescription(%q) error = %v, want error: %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseDescription(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

// formatDescription formats like keyctl_describe_key.
func formatDescription(d Description) string {
	return fmt.Sprintf("%s;%d;%d;%08x;%s", d.Type, d.UID, d.GID, d.Perm, d.Description)
}

func FuzzParseDescription(f *testing.F) {
	f.Add("psk;0;0;3f010000;NVMe0R01 host subsys")
	f.Add("user;-1;0;0;a;b")
	f.Add(";;;;")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDescription(s)
		if err != nil {
			return
		}
		again, err := parseDescription(formatDescription(d))
		if err != nil {
			t.Fatalf("%+v formats to something that does not parse: %v", d, err)
		}
		if diff := cmp.Diff(d, again); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}

func TestParseProcKeysLine(t *testing.T) {
	tests := []struct {
		in      string
		want    procKey
		wantErr bool
	}{
		{
			in: "0b0b8fa4 I--Q---     1 perm 3f010000     0     0 keyring   .nvme: 1",
			want: procKey{Serial: 0x0b0b8fa4, Flags: "I--Q---", Usage: 1, Timeout: "perm",
				Perm: 0x3f010000, Type: "keyring", Description: ".nvme: 1"},
		},
		{
			in: "31231b55 I--Q---     2 perm 1f3f0000     0 65534 keyring   _uid.0: 1\n",
			want: procKey{Serial: 0x31231b55, Flags: "I--Q---", Usage: 2, Timeout: "perm",
				Perm: 0x1f3f0000, GID: 65534, Type: "keyring", Description: "_uid.0: 1"},
		},
		{
			// Serial above 2^31, a wide uid, a long type name (truncated
			// to 9 by the kernel), a description with spaces.
			in: "9a2b3c4d I------  1234   5d 3f010000 100000 100000 asymmetr  Fedora kernel signing key: 1a2b",
			want: procKey{Serial: Serial(-0x65d4c3b3), Flags: "I------", Usage: 1234, Timeout: "5d",
				Perm: 0x3f010000, UID: 100000, GID: 100000, Type: "asymmetr", Description: "Fedora kernel signing key: 1a2b"},
		},
		{
			in: "1d3a0c6f I--Q---     1 perm 3f010000     0     0 psk       NVMe0R01 nqn.host nqn.subsys: 32",
			want: procKey{Serial: 0x1d3a0c6f, Flags: "I--Q---", Usage: 1, Timeout: "perm",
				Perm: 0x3f010000, Type: "psk", Description: "NVMe0R01 nqn.host nqn.subsys: 32"},
		},
		{in: "0b0b8fa4 I--Q---     1 perm 3f010000     0     0", wantErr: true},
		{in: "zzzzzzzz I--Q---     1 perm 3f010000     0     0 keyring   x", wantErr: true},
		{in: "0b0b8fa4 I--Q---     x perm 3f010000     0     0 keyring   x", wantErr: true},
		{in: "0 0 0 0 0 0 0 0 \n\n", wantErr: true}, // two lines (fuzz finding)
		{in: "0b0b8fa4 I--Q---     1 perm 3f01000g     0     0 keyring   x", wantErr: true},
		{in: "0b0b8fa4 I--Q---     1 perm 3f010000     u     0 keyring   x", wantErr: true},
		{in: "0b0b8fa4 I--Q---     1 perm 3f010000     0     g keyring   x", wantErr: true},
		{in: "1ffffffff I--Q--- 1 perm 0 0 0 keyring x", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseProcKeysLine(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseProcKeysLine(%q) error = %v, want error: %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseProcKeysLine(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

// formatProcKeysLine formats like proc_keys_show, except that it does not
// truncate the type to 9 characters.
func formatProcKeysLine(k procKey) string {
	return fmt.Sprintf("%08x %s %5d %4s %08x %5d %5d %-9s %s",
		uint32(k.Serial), k.Flags, k.Usage, k.Timeout, k.Perm, k.UID, k.GID, k.Type, k.Description)
}

func FuzzParseProcKeysLine(f *testing.F) {
	f.Add("0b0b8fa4 I--Q---     1 perm 3f010000     0     0 keyring   .nvme: 1")
	f.Add("9a2b3c4d I------  1234   5d 3f010000 100000 100000 asymmetr  a b: c")
	f.Add("1 2 3 4 5 6 7 8")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseProcKeysLine(s)
		if err != nil {
			return
		}
		again, err := parseProcKeysLine(formatProcKeysLine(k))
		if err != nil {
			t.Fatalf("%+v formats to something that does not parse: %v", k, err)
		}
		if diff := cmp.Diff(k, again); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}

func TestFindKeyringIn(t *testing.T) {
	listing := strings.Join([]string{
		"0562c2dd I------     1 perm 0f0b0000     0     0 keyring   .blacklist: empty",
		"garbage line",
		"11111111 I--Q---     1 perm 3f010000     0     0 user      .nvme: 5",
		"22222222 I--Q---     1 perm 3f030000     0     0 keyring   .nvme-other: 1",
		"33333333 I--Q---     1 perm 3f030000     0     0 keyring   .nvme: 1",
		"44444444 I--Q---     1 perm 3f030000     0     0 keyring   .nvme: 2",
		"55555555 I--Q---     1 perm 3f030000     0     0 keyring   .nfs",
		"66666666 I--Q---     1 perm 3f3f3f3f  1000  1000 keyring   .nfsd: empty",
		"77777777 I--Q---     1 perm 3f3f3f3f  1000  1000 keyring   .mine: empty",
		"88888888 I--Q---     1 perm 3f3f3f3f  1000  1000 keyring   .nvme: 1",
	}, "\n") + "\n"
	possessed := func(s Serial) bool { return s == 0x77777777 }
	for name, want := range map[string]Serial{".nvme": 0x33333333, ".blacklist": 0x0562c2dd, ".nfs": 0x55555555, ".mine": 0x77777777} {
		got, err := findKeyring(strings.NewReader(listing), name, possessed)
		if err != nil || got != want {
			t.Errorf("findKeyring(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	for _, name := range []string{".nvm", ""} {
		if got, err := findKeyring(strings.NewReader(listing), name, possessed); !errors.Is(err, ErrNotFound) {
			t.Errorf("findKeyring(%q) = %v, %v; want ErrNotFound", name, got, err)
		}
	}
	// A squatted name: only uid 1000's keyring, not possessed.
	_, err := findKeyring(strings.NewReader(listing), ".nfsd", possessed)
	var ue *UntrustedKeyringError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUntrustedKeyring) || errors.Is(err, ErrNotFound) {
		t.Fatalf("findKeyring(.nfsd) = %v, want an *UntrustedKeyringError", err)
	}
	if *ue != (UntrustedKeyringError{Name: ".nfsd", Serial: 0x66666666, UID: 1000}) {
		t.Errorf("error = %+v", *ue)
	}
	if !strings.Contains(err.Error(), "uid 1000") || !strings.Contains(err.Error(), `".nfsd"`) {
		t.Errorf("message %q names neither the owner nor the keyring", err)
	}
	// The squatter's keyring listed first does not hide root's.
	squatFirst := "99999999 I--Q---     1 perm 3f3f3f3f  1000  1000 keyring   .nvme: 1\n" + listing
	if got, err := findKeyring(strings.NewReader(squatFirst), ".nvme", possessed); err != nil || got != 0x33333333 {
		t.Errorf("findKeyring(.nvme) with a squatter first = %v, %v; want root's 0x33333333", got, err)
	}
}
