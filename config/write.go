package config

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// WriteEffective writes the policy as TOML with every default filled in:
// all of [global], [client] and [server], and for each [[peer]] the
// settings it overrides. The output parses to an equivalent policy.
func (p *Policy) WriteEffective(w io.Writer) error {
	var b bytes.Buffer
	if p.file != "" {
		fmt.Fprintf(&b, "# Effective tlshd-go policy from %s.\n", oneLine(p.file))
	} else {
		b.WriteString("# Effective tlshd-go policy (built-in defaults).\n")
	}
	b.WriteString("# Defaults are filled in; a [[peer]] lists only what it overrides and\n")
	b.WriteString("# inherits the rest from [client] or [server]. The first matching peer wins.\n")

	g := &p.global
	b.WriteString("\n[global]\n")
	kv(&b, "log_level", quote(levelName(g.LogLevel)))
	kv(&b, "max_concurrent", fmt.Sprint(g.MaxConcurrent))
	keyrings := make([]string, len(g.Keyrings))
	for i, k := range g.Keyrings {
		if k.Name != "" {
			keyrings[i] = quote(k.Name)
		} else {
			keyrings[i] = fmt.Sprint(k.Serial)
		}
	}
	kv(&b, "keyrings", "["+strings.Join(keyrings, ", ")+"]")
	kv(&b, "handshake_timeout", quote(g.HandshakeTimeout.String()))
	kv(&b, "tpm_device", quote(g.TPMDevice))
	kv(&b, "first_flight_timeout", quote(g.FirstFlightTimeout.String()))
	kv(&b, "drain_timeout", quote(g.DrainTimeout.String()))
	if g.KeyLog != "" {
		b.WriteString("\n[debug]\n")
		kv(&b, "keylog", quote(g.KeyLog))
	}

	for _, s := range []*Settings{p.client, p.server} {
		name := s.Role.String()
		fmt.Fprintf(&b, "\n[%s]\n", name)
		writeSpec(&b, name, specOf(s), s.Role)
	}
	for _, r := range p.peers {
		b.WriteString("\n[[peer]]\n")
		kv(&b, "name", quote(r.name))
		writeSpec(&b, "peer", r.spec, r.match.role)
		writeMatch(&b, &r.match)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func kv(b *bytes.Buffer, k, v string) {
	b.WriteString(k)
	b.WriteString(" = ")
	b.WriteString(v)
	b.WriteByte('\n')
}

func levelName(l slog.Level) string {
	for n, v := range logLevels {
		if v == l {
			return n
		}
	}
	return strings.ToLower(l.String())
}

// specOf turns complete settings into a spec with every field set.
func specOf(s *Settings) *settingsSpec {
	x := s.X509
	return &settingsSpec{
		reject:       &s.Reject,
		auth:         &s.Auth,
		cipherSuites: s.CipherSuites,
		groups:       s.Groups,
		pskModes:     s.PSKModes,
		timeout:      &s.Timeout,
		recordSize:   &s.RecordSizeLimit,
		x509: x509Spec{
			trustAnchors:      nonNil(x.TrustAnchors),
			certificate:       &x.Certificate,
			privateKey:        &x.PrivateKey,
			crls:              nonNil(x.CRLs),
			clientCertificate: &x.ClientCertificate,
			allowedNames:      &x.AllowedNames,
			requireEKU:        &x.RequireEKU,
			verifyPeerName:    &x.VerifyPeerName,
			reverseDNS:        &x.ReverseDNS,
		},
	}
}

func nonNil(l []string) *[]string {
	if l == nil {
		l = []string{}
	}
	return &l
}

// writeSpec writes the set fields of sp; table is the TOML table the
// fields belong to ("client", "server" or "peer"), for the x509
// sub-table. Role-specific keys are left out for the other role.
func writeSpec(b *bytes.Buffer, table string, sp *settingsSpec, role Role) {
	if sp.reject != nil {
		kv(b, "reject", fmt.Sprint(*sp.reject))
	}
	if sp.auth != nil {
		if *sp.auth == AllAuthModes {
			kv(b, "auth", `["any"]`)
		} else {
			kv(b, "auth", list(sp.auth.List(), func(m AuthMode) string { return m.String() }))
		}
	}
	if sp.cipherSuites != nil {
		kv(b, "cipher_suites", list(sp.cipherSuites, tls13.CipherSuite.String))
	}
	if sp.groups != nil {
		kv(b, "groups", list(sp.groups, tls13.Group.String))
	}
	if sp.pskModes != nil {
		kv(b, "psk_modes", list(sp.pskModes, tls13.PSKMode.String))
	}
	if sp.timeout != nil {
		kv(b, "timeout", quote(durationString(*sp.timeout)))
	}
	if sp.recordSize != nil {
		kv(b, "record_size_limit", fmt.Sprint(*sp.recordSize))
	}
	x := &sp.x509
	var xb bytes.Buffer
	if x.trustAnchors != nil {
		kv(&xb, "trust_anchors", list(*x.trustAnchors, func(s string) string { return s }))
	}
	if x.certificate != nil {
		kv(&xb, "certificate", quote(*x.certificate))
	}
	if x.privateKey != nil {
		kv(&xb, "private_key", quote(*x.privateKey))
	}
	if x.crls != nil {
		kv(&xb, "crl", list(*x.crls, func(s string) string { return s }))
	}
	if x.clientCertificate != nil && role != Client {
		kv(&xb, "client_certificate", quote(x.clientCertificate.String()))
	}
	if x.allowedNames != nil {
		kv(&xb, "allowed_names", list(*x.allowedNames, NamePattern.String))
	}
	if x.requireEKU != nil {
		kv(&xb, "require_eku", fmt.Sprint(*x.requireEKU))
	}
	if x.verifyPeerName != nil && role != Server {
		kv(&xb, "verify_peer_name", fmt.Sprint(*x.verifyPeerName))
	}
	if x.reverseDNS != nil && role != Server {
		kv(&xb, "reverse_dns", fmt.Sprint(*x.reverseDNS))
	}
	if xb.Len() > 0 {
		fmt.Fprintf(b, "\n[%s.x509]\n", table)
		b.Write(xb.Bytes())
	}
}

func writeMatch(b *bytes.Buffer, m *matcher) {
	if m.empty() {
		b.WriteString("# no [peer.match]: matches every request\n")
		return
	}
	b.WriteString("\n[peer.match]\n")
	if m.role != 0 {
		kv(b, "role", quote(m.role.String()))
	}
	if m.peerName != nil {
		kv(b, "peer_name", quote(m.peerName.pattern))
	}
	if m.addrs != nil {
		kv(b, "address", list(m.addrs, func(p netip.Prefix) string {
			if p.IsSingleIP() {
				return p.Addr().String()
			}
			return p.String()
		}))
	}
	if m.pskIdentity != nil {
		kv(b, "psk_identity", quote(m.pskIdentity.pattern))
	}
	if m.hostNQN != nil {
		kv(b, "host_nqn", quote(m.hostNQN.pattern))
	}
	if m.subsysNQN != nil {
		kv(b, "subsys_nqn", quote(m.subsysNQN.pattern))
	}
}

func list[T any](l []T, str func(T) string) string {
	q := make([]string, len(l))
	for i, e := range l {
		q[i] = quote(str(e))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func durationString(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	return d.String()
}

// quote writes s as a TOML basic string. Invalid UTF-8 (possible only in
// file names from the command line) becomes U+FFFD.
func quote(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// oneLine makes s safe for a comment line.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}
