package config

import (
	"crypto/x509"
	"net"
	"net/url"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern string
		fold    bool
		s       string
		want    bool
	}{
		{"abc", false, "abc", true},
		{"abc", false, "ABC", false},
		{"abc", true, "ABC", true},
		{"*", false, "", true},
		{"*", false, "a/b.c d", true},
		{"a*", false, "a", true},
		{"a*c", false, "abbbc", true},
		{"a*c", false, "abbbcd", false},
		{"*.example.com", true, "x.y.Example.COM", true},
		{"*.example.com", true, "example.com", false},
		{"a?c", false, "abc", true},
		{"a?c", false, "ac", false},
		{"a?c", false, "aéc", true}, // ? is one character, not one byte
		{"[ab]x", false, "bx", true},
		{"[ab]x", false, "cx", false},
		{"[!ab]x", false, "cx", true},
		{"[^ab]x", false, "ax", false},
		{"[a-c]", false, "b", true},
		{"[a-c]", true, "B", true},
		{"[A-C]", true, "b", true},
		{"[a-]", false, "-", true},
		{`\*`, false, "*", true},
		{`\*`, false, "x", false},
		{`a\?`, false, "a?", true},
		{"*a*b*c*", false, "xxaxxbxxcxx", true},
		{"*a*b*c*", false, "xxaxxcxxbxx", false},
		{"NVMe1R0? * *", false, "NVMe1R01 nqn.h nqn.s Zm9v/YmFy+==", true},
		{"nqn.*:uuid:*", false, "nqn.2014-08.org.nvmexpress:uuid:0f01", true},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.pattern, tt.fold)
		if err != nil {
			t.Errorf("compileGlob(%q): %v", tt.pattern, err)
			continue
		}
		if got := g.match(tt.s); got != tt.want {
			t.Errorf("glob %q (fold %v) match %q = %v, want %v", tt.pattern, tt.fold, tt.s, got, tt.want)
		}
	}
	for _, bad := range []string{`a\`, "[abc", "[]", "[z-a]", "[a-\\", "\xff"} {
		if _, err := compileGlob(bad, false); err == nil {
			t.Errorf("compileGlob(%q) succeeded", bad)
		}
	}
}

func cert(dns []string, ips []string, uris []string, emails []string) *x509.Certificate {
	c := &x509.Certificate{DNSNames: dns, EmailAddresses: emails}
	for _, ip := range ips {
		c.IPAddresses = append(c.IPAddresses, net.ParseIP(ip))
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, pu)
	}
	return c
}

func TestAllowedNames(t *testing.T) {
	parse := func(l ...string) AllowedNames {
		var a AllowedNames
		for _, s := range l {
			p, err := ParseNamePattern(s)
			if err != nil {
				t.Fatalf("ParseNamePattern(%q): %v", s, err)
			}
			a = append(a, p)
		}
		return a
	}
	tests := []struct {
		name  string
		allow AllowedNames
		cert  *x509.Certificate
		want  bool
	}{
		{"empty list allows all", nil, cert(nil, nil, nil, nil), true},
		{"nil cert", parse("a.example"), nil, false},
		{"dns exact", parse("nfs.example.com"), cert([]string{"NFS.example.com"}, nil, nil, nil), true},
		{"dns trailing dot", parse("nfs.example.com."), cert([]string{"nfs.example.com."}, nil, nil, nil), true},
		{"dns other", parse("nfs.example.com"), cert([]string{"www.example.com"}, nil, nil, nil), false},
		{"dns wildcard one label", parse("*.example.com"), cert([]string{"a.example.com"}, nil, nil, nil), true},
		{"dns wildcard two labels", parse("*.example.com"), cert([]string{"a.b.example.com"}, nil, nil, nil), false},
		{"dns wildcard apex", parse("*.example.com"), cert([]string{"example.com"}, nil, nil, nil), false},
		{"dns wildcard cert vs exact", parse("a.example.com"), cert([]string{"*.example.com"}, nil, nil, nil), false},
		{"dns wildcard cert vs wildcard", parse("*.example.com"), cert([]string{"*.example.com"}, nil, nil, nil), true},
		{"cn ignored", parse("nfs.example.com"), &x509.Certificate{}, false},
		{"ip exact", parse("192.0.2.1"), cert(nil, []string{"192.0.2.1"}, nil, nil), true},
		{"ip cidr", parse("192.0.2.0/24"), cert(nil, []string{"192.0.2.200"}, nil, nil), true},
		{"ip cidr miss", parse("192.0.2.0/24"), cert(nil, []string{"192.0.3.1"}, nil, nil), false},
		{"ip v6", parse("2001:db8::/32"), cert(nil, []string{"2001:db8:5::1"}, nil, nil), true},
		{"ip v4 as 16 bytes", parse("10.0.0.0/8"), cert(nil, []string{"::ffff:10.1.2.3"}, nil, nil), true},
		{"ip mapped pattern", parse("::ffff:10.0.0.0/104"), cert(nil, []string{"10.1.2.3"}, nil, nil), true},
		{"uri exact", parse("spiffe://td/nfs"), cert(nil, nil, []string{"spiffe://td/nfs"}, nil), true},
		{"uri exact miss", parse("spiffe://td/nfs"), cert(nil, nil, []string{"spiffe://td/nfs2"}, nil), false},
		{"uri prefix", parse("spiffe://td/nfs/*"), cert(nil, nil, []string{"spiffe://td/nfs/a"}, nil), true},
		{"uri prefix miss", parse("spiffe://td/nfs/*"), cert(nil, nil, []string{"spiffe://td/nvme/a"}, nil), false},
		{"urn", parse("uri:urn:uuid:1"), cert(nil, nil, []string{"urn:uuid:1"}, nil), true},
		{"email", parse("ops@Example.com"), cert(nil, nil, nil, []string{"ops@EXAMPLE.com"}), true},
		{"email local case", parse("ops@example.com"), cert(nil, nil, nil, []string{"Ops@example.com"}), false},
		{"email domain", parse("@example.com"), cert(nil, nil, nil, []string{"anyone@example.com"}), true},
		{"email domain miss", parse("@example.com"), cert(nil, nil, nil, []string{"a@example.org"}), false},
		{"kinds do not mix", parse("192.0.2.1"), cert([]string{"192.0.2.1"}, nil, nil, nil), false},
		{"any of several", parse("a.example", "192.0.2.1"), cert([]string{"b.example"}, []string{"192.0.2.1"}, nil, nil), true},
	}
	for _, tt := range tests {
		if got := tt.allow.Allows(tt.cert); got != tt.want {
			t.Errorf("%s: Allows = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNamePatternRoundTrip(t *testing.T) {
	for _, s := range []string{"a.example", "*.example", "192.0.2.1", "10.0.0.0/8", "2001:db8::/32",
		"spiffe://td/x*", "uri:urn:uuid:1", "a@example.com", "@example.com"} {
		p, err := ParseNamePattern(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		q, err := ParseNamePattern(p.String())
		if err != nil || q != p {
			t.Errorf("%q → %q → %+v, %v", s, p.String(), q, err)
		}
	}
}
