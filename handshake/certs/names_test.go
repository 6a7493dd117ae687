package certs

import (
	"errors"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
)

func TestParseNamePattern(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"nfs.example.com", "dns:nfs.example.com"},
		{"NFS.Example.COM.", "dns:nfs.example.com"},
		{"*.example.com", "dns:*.example.com"},
		{"dns:host_1", "dns:host_1"},
		{"192.0.2.7", "ip:192.0.2.7"},
		{"::ffff:192.0.2.7", "ip:192.0.2.7"},
		{"2001:DB8::1", "ip:2001:db8::1"},
		{"192.0.2.0/24", "cidr:192.0.2.0/24"},
		{"ip:10.0.0.0/8", "cidr:10.0.0.0/8"},
		{"::ffff:10.0.0.0/104", "cidr:10.0.0.0/8"},
		{"spiffe://example.org/ns/nfs/*", "uri:spiffe://example.org/ns/nfs/*"},
		{"URI:urn:uuid:1234", "uri:urn:uuid:1234"},
		{"admin@Example.com", "email:admin@example.com"},
		{"@example.com", "email:@example.com"},
		{"*@example.com", "email:@example.com"},
		{"cn:NFS Client 7", "cn:NFS Client 7"},
	} {
		p, err := ParseNamePattern(tt.in)
		if err != nil {
			t.Errorf("ParseNamePattern(%q): %v", tt.in, err)
			continue
		}
		if p.String() != tt.want {
			t.Errorf("ParseNamePattern(%q) = %s, want %s", tt.in, p, tt.want)
		}
	}
	for _, in := range []string{"", " ", "*", "a..b", "*.", "a.*.b", "ex ample.com", "ip:nope", "ip:fe80::1%eth0",
		"uri:no-scheme", "a@b@c", "email:x@", "cn:", strings.Repeat("a", 64) + ".com", "-@x y",
		"192.0.2.77/24"} { // host bits set: a typo more likely than a wish
		if p, err := ParseNamePattern(in); err == nil {
			t.Errorf("ParseNamePattern(%q) = %s, want an error", in, p)
		}
	}
}

func TestNamePolicy(t *testing.T) {
	ca := certstest.NewCA(t, certstest.ECDSAP256, "root")
	cert := ca.Leaf(t, certstest.ECDSAP256,
		certstest.CN("client 7"),
		certstest.DNS("client7.nfs.example.com", "Legacy.Example.NET."),
		certstest.IPs("192.0.2.7", "2001:db8::7"),
		certstest.URIs("spiffe://example.org/ns/nfs/sa/client7"),
		certstest.Emails("root@Client7.Example.com"),
	).Cert
	for _, tt := range []struct {
		pattern string
		allowed bool
	}{
		{"client7.nfs.example.com", true},
		{"*.nfs.example.com", true},
		{"*.example.com", false}, // one label only
		{"legacy.example.net", true},
		{"nfs.example.com", false},
		{"192.0.2.7", true},
		{"192.0.2.0/24", true},
		{"192.0.3.0/24", false},
		{"2001:db8::/32", true},
		{"2001:db8::8", false},
		{"spiffe://example.org/ns/nfs/sa/client7", true},
		{"spiffe://example.org/ns/nfs/*", true},
		{"spiffe://example.org/ns/other/*", false},
		{"spiffe://example.org/ns/nfs", false},
		{"root@client7.example.com", true},
		{"@client7.example.com", true},
		{"admin@client7.example.com", false},
		{"@example.com", false},
		{"cn:client 7", true},
		{"cn:client", false},
	} {
		p, err := ParseNamePolicy(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Check(cert)
		if tt.allowed != (err == nil) {
			t.Errorf("%q: Check = %v, want allowed %v", tt.pattern, err, tt.allowed)
		}
		var ne *NameNotAllowedError
		if err != nil && (!errors.As(err, &ne) || len(ne.Names) != 7) {
			t.Errorf("%q: error %v does not list the certificate's names", tt.pattern, err)
		}
	}
	// Several patterns: any one suffices.
	p, err := ParseNamePolicy("nfs.example.com", "192.0.2.0/24")
	if err != nil || p.Check(cert) != nil || len(p.Patterns()) != 2 {
		t.Errorf("list: %v", err)
	}
	// No patterns: everything is allowed.
	if p, err := ParseNamePolicy(); err != nil || p != nil || p.Check(cert) != nil {
		t.Error("the empty policy is not nil or rejects")
	}
	if _, err := ParseNamePolicy("ok.example", "bad pattern"); err == nil {
		t.Error("bad pattern accepted")
	}
}

func FuzzParseNamePattern(f *testing.F) {
	for _, s := range []string{"*.example.com", "192.0.2.0/24", "spiffe://x/*", "a@b", "cn:x", "dns:", "ip:::1"} {
		f.Add(s)
	}
	ca := certstest.NewCA(f, certstest.ECDSAP256, "root")
	cert := ca.Leaf(f, certstest.ECDSAP256, certstest.URIs("spiffe://x/y"), certstest.Emails("a@b")).Cert
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNamePattern(s)
		if err != nil {
			return
		}
		// The normal form parses to itself.
		q, err := ParseNamePattern(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("%q → %s → %v, %v", s, p, q, err)
		}
		p.Matches(cert)
	})
}
