package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// A NameKind is the kind of name a pattern matches.
type NameKind uint8

// Name kinds. Each matches the certificate's SANs of that kind, except
// NameCN, which matches the subject common name.
const (
	NameDNS NameKind = iota + 1
	NameIP
	NameCIDR
	NameURI
	NameEmail
	NameCN
)

var nameKindPrefixes = []struct {
	prefix string
	kind   NameKind
}{
	{"dns:", NameDNS}, {"ip:", NameIP}, {"cidr:", NameCIDR}, {"uri:", NameURI}, {"email:", NameEmail}, {"cn:", NameCN},
}

func (k NameKind) String() string {
	switch k {
	case NameDNS:
		return "dns"
	case NameIP:
		return "ip"
	case NameCIDR:
		return "cidr"
	case NameURI:
		return "uri"
	case NameEmail:
		return "email"
	case NameCN:
		return "cn"
	}
	return fmt.Sprintf("NameKind(%d)", uint8(k))
}

// A NamePattern is one entry of a peer-name allow-list.
type NamePattern struct {
	Kind NameKind
	// Value is the normalised pattern: a lower-case DNS name, possibly
	// starting with "*." (exactly one label); an IP address; a CIDR
	// prefix; a URI, ending in "*" for a prefix match; an email address,
	// or "@domain" for any mailbox in the domain; a common name.
	Value  string
	prefix netip.Prefix // NameIP, NameCIDR
}

func (p NamePattern) String() string { return p.Kind.String() + ":" + p.Value }

// ParseNamePattern parses one allow-list entry. An explicit kind prefix
// ("dns:", "ip:", "cidr:", "uri:", "email:", "cn:") may be given; otherwise the
// kind is guessed: "://" makes a URI, "@" an email address, an address or
// CIDR prefix an IP pattern, and anything else a DNS name. Wildcards:
// "*.example.com" (one label), "@example.com" or "*@example.com" (a mail
// domain), "spiffe://example.org/ns/*" (a URI prefix).
func ParseNamePattern(s string) (NamePattern, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return NamePattern{}, errors.New("certs: empty name pattern")
	}
	var kind NameKind
	v := s
	lower := strings.ToLower(s)
	for _, kp := range nameKindPrefixes {
		if strings.HasPrefix(lower, kp.prefix) {
			kind, v = kp.kind, s[len(kp.prefix):]
			break
		}
	}
	if kind == 0 {
		switch {
		case strings.Contains(v, "://"):
			kind = NameURI
		case strings.Contains(v, "@"):
			kind = NameEmail
		default:
			if _, err := netip.ParsePrefix(v); err == nil {
				kind = NameCIDR
			} else if _, err := netip.ParseAddr(v); err == nil {
				kind = NameIP
			} else {
				kind = NameDNS
			}
		}
	}
	p, err := parsePattern(kind, v)
	if err != nil {
		return NamePattern{}, fmt.Errorf("certs: name pattern %q: %w", s, err)
	}
	return p, nil
}

func parsePattern(kind NameKind, v string) (NamePattern, error) {
	switch kind {
	case NameDNS:
		d, err := normalizeDNS(v, true)
		if err != nil && strings.Contains(v, ":") {
			return NamePattern{}, fmt.Errorf("%w (write \"uri:%s\" for a URI)", err, v)
		}
		return NamePattern{Kind: NameDNS, Value: d}, err
	case NameIP, NameCIDR:
		if pfx, err := netip.ParsePrefix(v); err == nil {
			if pfx.Addr().Zone() != "" {
				return NamePattern{}, errors.New("zones are not allowed")
			}
			if m := pfx.Masked(); m != pfx {
				// Most likely a typo: refuse rather than guess.
				return NamePattern{}, fmt.Errorf("address prefix has host bits set (did you mean %s?)", m)
			}
			if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
				pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
			}
			return NamePattern{Kind: NameCIDR, Value: pfx.String(), prefix: pfx}, nil
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return NamePattern{}, errors.New("not an IP address or CIDR prefix")
		}
		if a.Zone() != "" {
			return NamePattern{}, errors.New("zones are not allowed")
		}
		a = a.Unmap()
		return NamePattern{Kind: NameIP, Value: a.String(), prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	case NameURI:
		base := strings.TrimSuffix(v, "*")
		u, err := url.Parse(base)
		if err != nil || u.Scheme == "" || strings.ContainsAny(v, " \t") {
			return NamePattern{}, errors.New("not an absolute URI")
		}
		return NamePattern{Kind: NameURI, Value: v}, nil
	case NameEmail:
		local, domain, ok := strings.Cut(v, "@")
		if !ok || strings.Contains(domain, "@") {
			return NamePattern{}, errors.New("not an email address")
		}
		if local == "*" {
			local = ""
		}
		if strings.ContainsAny(local, " \t\"") {
			return NamePattern{}, errors.New("unsupported local part")
		}
		d, err := normalizeDNS(domain, false)
		if err != nil {
			return NamePattern{}, err
		}
		return NamePattern{Kind: NameEmail, Value: local + "@" + d}, nil
	case NameCN:
		if v == "" {
			return NamePattern{}, errors.New("empty common name")
		}
		return NamePattern{Kind: NameCN, Value: v}, nil
	}
	return NamePattern{}, errors.New("unknown kind")
}

// normalizeDNS lower-cases a DNS name, drops a trailing dot and checks the
// syntax (letters, digits, '-', '_'; labels of 1 to 63 bytes; at most 253
// bytes). With wildcard, a first label of "*" is allowed.
func normalizeDNS(s string, wildcard bool) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" || len(s) > 253 {
		return "", errors.New("bad DNS name length")
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && wildcard && len(labels) > 1 {
			continue
		}
		if l == "" || len(l) > 63 {
			return "", errors.New("bad DNS label")
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad character %q in DNS name", c)
			}
		}
	}
	return s, nil
}

// A NamePolicy is an allow-list of peer names. The nil policy allows
// every name.
type NamePolicy struct {
	patterns []NamePattern
}

// ParseNamePolicy parses allow-list entries (see ParseNamePattern). No
// entries gives the nil policy, which allows everything.
func ParseNamePolicy(patterns ...string) (*NamePolicy, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	p := &NamePolicy{}
	for _, s := range patterns {
		np, err := ParseNamePattern(s)
		if err != nil {
			return nil, err
		}
		p.patterns = append(p.patterns, np)
	}
	return p, nil
}

// Patterns returns the policy's entries.
func (p *NamePolicy) Patterns() []NamePattern {
	if p == nil {
		return nil
	}
	return append([]NamePattern(nil), p.patterns...)
}

// A NameNotAllowedError says that none of a peer certificate's names is on
// the allow-list.
type NameNotAllowedError struct {
	Names []string // the certificate's names, "kind:value"
}

func (e *NameNotAllowedError) Error() string {
	if len(e.Names) == 0 {
		return "certs: peer certificate has no names to match the allow-list"
	}
	return fmt.Sprintf("certs: no peer certificate name is allowed: %s", strings.Join(e.Names, ", "))
}

// Check returns nil if one of cert's names matches a pattern, and a
// *NameNotAllowedError otherwise.
func (p *NamePolicy) Check(cert *x509.Certificate) error {
	if p == nil {
		return nil
	}
	for _, pat := range p.patterns {
		if pat.Matches(cert) {
			return nil
		}
	}
	return &NameNotAllowedError{Names: certNames(cert)}
}

// Matches reports whether one of cert's names matches p.
func (p NamePattern) Matches(cert *x509.Certificate) bool {
	switch p.Kind {
	case NameDNS:
		for _, d := range cert.DNSNames {
			if matchDNS(p.Value, d) {
				return true
			}
		}
	case NameIP, NameCIDR:
		for _, ip := range cert.IPAddresses {
			a, ok := netip.AddrFromSlice(ip)
			if ok && p.prefix.Contains(a.Unmap()) {
				return true
			}
		}
	case NameURI:
		for _, u := range cert.URIs {
			s := u.String()
			if base, ok := strings.CutSuffix(p.Value, "*"); ok {
				if strings.HasPrefix(s, base) {
					return true
				}
			} else if s == p.Value {
				return true
			}
		}
	case NameEmail:
		plocal, pdomain, _ := strings.Cut(p.Value, "@")
		for _, e := range cert.EmailAddresses {
			local, domain, ok := strings.Cut(e, "@")
			if !ok || !strings.EqualFold(strings.TrimSuffix(domain, "."), pdomain) {
				continue
			}
			if plocal == "" || local == plocal {
				return true
			}
		}
	case NameCN:
		return cert.Subject.CommonName == p.Value
	}
	return false
}

func matchDNS(pattern, name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if pattern == name {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok {
		return false
	}
	first, rest, ok := strings.Cut(name, ".")
	return ok && first != "" && first != "*" && "."+rest == suffix
}

func certNames(c *x509.Certificate) []string {
	var out []string
	for _, d := range c.DNSNames {
		out = append(out, "dns:"+d)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "ip:"+ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, "uri:"+u.String())
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+e)
	}
	if c.Subject.CommonName != "" {
		out = append(out, "cn:"+c.Subject.CommonName)
	}
	return out
}
