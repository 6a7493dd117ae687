package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// matcher is a compiled [peer.match] table. Zero fields match anything.
type matcher struct {
	role        Role // 0: either
	peerName    *glob
	addrs       []netip.Prefix // nil: any
	pskIdentity *glob
	hostNQN     *glob
	subsysNQN   *glob
}

// empty reports whether the matcher matches every request.
func (m *matcher) empty() bool {
	return m.role == 0 && m.peerName == nil && m.addrs == nil &&
		m.pskIdentity == nil && m.hostNQN == nil && m.subsysNQN == nil
}

func (m *matcher) usesIdentity() bool {
	return m.pskIdentity != nil || m.hostNQN != nil || m.subsysNQN != nil
}

func (m *matcher) matches(x *Match) bool {
	if m.role != 0 && m.role != x.Role {
		return false
	}
	if m.peerName != nil && (x.PeerName == "" || !m.peerName.match(x.PeerName)) {
		return false
	}
	if m.addrs != nil && !matchAddr(m.addrs, x.Addr) {
		return false
	}
	if m.pskIdentity != nil && (x.PSKIdentity == "" || !m.pskIdentity.match(x.PSKIdentity)) {
		return false
	}
	if m.hostNQN != nil && (x.HostNQN == "" || !m.hostNQN.match(x.HostNQN)) {
		return false
	}
	if m.subsysNQN != nil && (x.SubsysNQN == "" || !m.subsysNQN.match(x.SubsysNQN)) {
		return false
	}
	return true
}

// matchAddr reports whether a is in one of the prefixes. An IPv4 address
// seen through an IPv6 socket (::ffff:a.b.c.d) matches IPv4 prefixes, and
// zones are ignored.
func matchAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("")
	u := a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) || p.Contains(u) {
			return true
		}
	}
	return false
}

// A glob is a shell-style pattern: * matches any run of characters
// (including '/' and '.'), ? one character, [abc], [a-z] and [!a-z] (or
// [^a-z]) one character of a class, and \ quotes the next character.
type glob struct {
	pattern string
	fold    bool    // ASCII case-insensitive
	literal bool    // no metacharacters: compare with lit
	lit     string  // unquoted pattern when literal
	toks    []token // otherwise
}

type tokenKind uint8

const (
	tokLit tokenKind = iota
	tokAny
	tokStar
	tokClass
)

type token struct {
	kind   tokenKind
	r      rune
	negate bool
	ranges []runeRange
}

type runeRange struct{ lo, hi rune }

var (
	errGlobTrailingBackslash = errors.New("pattern ends with a backslash")
	errGlobUnterminated      = errors.New("unterminated [ in pattern")
	errGlobEmptyClass        = errors.New("empty [] in pattern")
	errGlobBadRange          = errors.New("bad range in [] in pattern")
	errGlobUTF8              = errors.New("pattern is not valid UTF-8")
)

func compileGlob(pattern string, fold bool) (*glob, error) {
	if !utf8.ValidString(pattern) {
		return nil, errGlobUTF8
	}
	g := &glob{pattern: pattern, fold: fold, literal: true}
	var lit []rune
	s := pattern
	next := func() rune {
		r, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		return r
	}
	for s != "" {
		r := next()
		switch r {
		case '\\':
			if s == "" {
				return nil, errGlobTrailingBackslash
			}
			r = next()
			g.toks = append(g.toks, token{kind: tokLit, r: r})
			lit = append(lit, r)
		case '*':
			g.literal = false
			// Consecutive stars are one star.
			if n := len(g.toks); n == 0 || g.toks[n-1].kind != tokStar {
				g.toks = append(g.toks, token{kind: tokStar})
			}
		case '?':
			g.literal = false
			g.toks = append(g.toks, token{kind: tokAny})
		case '[':
			g.literal = false
			t := token{kind: tokClass}
			if s != "" && (s[0] == '!' || s[0] == '^') {
				t.negate = true
				s = s[1:]
			}
			closed := false
			for s != "" {
				lo := next()
				if lo == ']' {
					closed = true
					break
				}
				if lo == '\\' {
					if s == "" {
						return nil, errGlobTrailingBackslash
					}
					lo = next()
				}
				hi := lo
				if len(s) >= 2 && s[0] == '-' && s[1] != ']' {
					s = s[1:]
					hi = next()
					if hi == '\\' {
						if s == "" {
							return nil, errGlobTrailingBackslash
						}
						hi = next()
					}
					if hi < lo {
						return nil, errGlobBadRange
					}
				}
				t.ranges = append(t.ranges, runeRange{lo, hi})
			}
			if !closed {
				return nil, errGlobUnterminated
			}
			if len(t.ranges) == 0 {
				return nil, errGlobEmptyClass
			}
			g.toks = append(g.toks, t)
		default:
			g.toks = append(g.toks, token{kind: tokLit, r: r})
			lit = append(lit, r)
		}
	}
	if g.literal {
		g.lit = string(lit)
		g.toks = nil
	}
	return g, nil
}

func foldRune(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

func (t *token) matchRune(r rune, fold bool) bool {
	switch t.kind {
	case tokAny:
		return true
	case tokLit:
		if fold {
			return foldRune(t.r) == foldRune(r)
		}
		return t.r == r
	case tokClass:
		in := false
		for _, rr := range t.ranges {
			if rr.lo <= r && r <= rr.hi {
				in = true
				break
			}
			if fold {
				if f := foldRune(r); rr.lo <= f && f <= rr.hi {
					in = true
					break
				}
				if 'a' <= r && r <= 'z' {
					if u := r - 'a' + 'A'; rr.lo <= u && u <= rr.hi {
						in = true
						break
					}
				}
			}
		}
		return in != t.negate
	}
	return false
}

// match reports whether s matches the whole pattern. It runs in
// O(len(pattern)·len(s)) time and does not allocate.
func (g *glob) match(s string) bool {
	if g.literal {
		if g.fold {
			return equalFoldASCII(g.lit, s)
		}
		return g.lit == s
	}
	ti, si := 0, 0
	starT, starS := -1, 0
	for ti < len(g.toks) || si < len(s) {
		if ti < len(g.toks) {
			t := &g.toks[ti]
			if t.kind == tokStar {
				starT, starS = ti, si
				ti++
				continue
			}
			if si < len(s) {
				r, n := utf8.DecodeRuneInString(s[si:])
				if t.matchRune(r, g.fold) {
					ti++
					si += n
					continue
				}
			}
		}
		// Mismatch: let the last star absorb one more character.
		if starT >= 0 && starS < len(s) {
			_, n := utf8.DecodeRuneInString(s[starS:])
			starS += n
			ti, si = starT+1, starS
			continue
		}
		return false
	}
	return true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldRune(rune(a[i])) != foldRune(rune(b[i])) {
			return false
		}
	}
	return true
}

// parseAddrOrPrefix parses a match address: an address (a host prefix)
// or a CIDR prefix without host bits; IPv4-mapped forms are unmapped.
func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address prefix %q", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("address prefix %q has host bits set (did you mean %s?)", s, m)
		}
		return unmapPrefix(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n ≥ 96) into a.b.c.d/(n-96).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
