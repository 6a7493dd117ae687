package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// An Error is one problem in a policy file.
type Error struct {
	File string // as given to Load or Parse
	Line int    // 1-based; 0 when unknown
	Key  string // e.g. "peer[1].groups"; "" for syntax errors
	Msg  string

	at    string // key path used to find Line, e.g. "peer[1].groups[2]"
	cause error  // what failed, for a file that did not load
}

// Unwrap returns the cause of a file's failure to load (an *os.PathError,
// certs.ErrKeyMismatch, ...), nil for errors in the policy text.
func (e *Error) Unwrap() error { return e.cause }

// Error formats e as "file:line: key: message".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	} else if e.Line > 0 {
		b.WriteString("line ")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Parse parses a policy; name is used in error messages, and relative
// paths in the policy are resolved against its directory. It reads none
// of the files the policy names, so its settings have no Credentials:
// Load and Compile are what a daemon serves with. The error, if
// any, is an *Error or an errors.Join of several, ordered by line.
func Parse(data []byte, name string) (*Policy, error) {
	return parse(data, name, filepath.Dir(name))
}

func parse(data []byte, name, base string) (*Policy, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: name, Line: pe.Position.Line, Msg: "syntax error: " + pe.Message}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	d := &decoder{file: name, base: base}
	p := d.policy(raw)
	if len(d.errs) == 0 {
		p.lines = locate(data)
		return p, nil
	}
	return nil, d.finish(data)
}

// decoder walks the generic TOML tree and collects every error.
type decoder struct {
	file string
	base string
	errs []*Error
}

// errorf records an error for key; at, if set, is a more precise path
// (a list element) for finding the line.
func (d *decoder) errorf(key, at, format string, args ...any) {
	if at == "" {
		at = key
	}
	d.errs = append(d.errs, &Error{File: d.file, Key: key, Msg: fmt.Sprintf(format, args...), at: at})
}

// finish finds the lines of the errors and joins them in file order.
func (d *decoder) finish(data []byte) error {
	lines := locate(data)
	for _, e := range d.errs {
		for at := e.at; at != ""; at = parentKey(at) {
			if n, ok := lines[at]; ok {
				e.Line = n
				break
			}
		}
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	if len(d.errs) == 1 {
		return d.errs[0]
	}
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// parentKey strips the last component of a key path: "a.b[2]" → "a.b",
// "a.b" → "a". It knows quoted components.
func parentKey(k string) string {
	if strings.HasSuffix(k, "]") {
		if i := strings.LastIndexByte(k, '['); i > 0 {
			return k[:i]
		}
		return ""
	}
	last := -1
	inQuote := false
	for i := 0; i < len(k); i++ {
		switch k[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case '.':
			if !inQuote {
				last = i
			}
		}
	}
	if last < 0 {
		return ""
	}
	return k[:last]
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// known reports keys of m that are not in allowed, in a stable order.
func (d *decoder) known(path string, m map[string]any, allowed ...string) {
	var unknown []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		d.errorf(joinKey(path, k), "", "unknown key")
	}
}

func (d *decoder) table(path string, v any) (map[string]any, bool) {
	if v == nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(path, "", "must be a table, not %s", typeName(v))
		return nil, false
	}
	return m, true
}

func (d *decoder) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.errorf(path, "", "must be a string, not %s", typeName(v))
	}
	return s, ok
}

func (d *decoder) boolean(path string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		d.errorf(path, "", "must be true or false, not %s", typeName(v))
	}
	return b, ok
}

// list returns the elements of an array with their key paths.
func (d *decoder) list(path string, v any) ([]any, bool) {
	switch l := v.(type) {
	case []any:
		return l, true
	case []map[string]any:
		out := make([]any, len(l))
		for i := range l {
			out[i] = l[i]
		}
		return out, true
	}
	d.errorf(path, "", "must be an array, not %s", typeName(v))
	return nil, false
}

// decodeSet decodes a non-empty list of distinct values, such as the
// cipher suites a policy allows: an empty one would refuse every handshake.
func decodeSet[T comparable](d *decoder, path string, v any, what string, conv func(s string) (T, error)) ([]T, bool) {
	l, ok := decodeList(d, path, v, what, conv, eqComparable)
	if ok && len(l) == 0 {
		d.errorf(path, "", "must name at least one %s", what)
		return nil, false
	}
	return l, ok
}

// decodeList decodes an array of strings, converting each element with
// conv and reporting its error at the element's line. Duplicates (by
// conv's result, compared with eq) are errors too.
func decodeList[T any](d *decoder, path string, v any, what string, conv func(s string) (T, error), eq func(a, b T) bool) ([]T, bool) {
	l, ok := d.list(path, v)
	if !ok {
		return nil, false
	}
	out := make([]T, 0, len(l))
	good := true
	for i, e := range l {
		at := indexKey(path, i)
		s, ok := e.(string)
		if !ok {
			d.errorf(path, at, "%s must be a string, not %s", what, typeName(e))
			good = false
			continue
		}
		t, err := conv(s)
		if err != nil {
			d.errorf(path, at, "%v", err)
			good = false
			continue
		}
		if eq != nil && slices.ContainsFunc(out, func(o T) bool { return eq(o, t) }) {
			d.errorf(path, at, "%s %q is listed twice", what, s)
			good = false
			continue
		}
		out = append(out, t)
	}
	return out, good
}

func (d *decoder) duration(path string, v any, allowZero bool) (time.Duration, bool) {
	s, ok := d.str(path, v)
	if !ok {
		return 0, false
	}
	t, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.errorf(path, "", "bad duration %q (write e.g. \"10s\" or \"1m30s\")", s)
	case t < 0 || t == 0 && !allowZero:
		d.errorf(path, "", "must be positive")
	case t > MaxTimeout:
		d.errorf(path, "", "must be at most %v", MaxTimeout)
	default:
		return t, true
	}
	return 0, false
}

// file resolves a path from the policy.
func (d *decoder) resolvePath(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.base, p)
	}
	return filepath.Clean(p), nil
}

func (d *decoder) policy(raw map[string]any) *Policy {
	d.known("", raw, "global", "client", "server", "peer", "debug")
	g := d.global(raw["global"])
	g.KeyLog = d.debug(raw["debug"])
	client := d.settings("client", raw["client"], Client)
	server := d.settings("server", raw["server"], Server)
	peers := d.peers(raw["peer"])
	return build(d.file, g, client, server, peers)
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

func (d *decoder) global(v any) Global {
	g := defaultGlobal()
	m, ok := d.table("global", v)
	if !ok {
		return g
	}
	d.known("global", m, "log_level", "max_concurrent", "keyrings", "handshake_timeout", "tpm_device",
		"first_flight_timeout", "drain_timeout")
	if v, ok := m["log_level"]; ok {
		if s, ok := d.str("global.log_level", v); ok {
			if l, ok := logLevels[s]; ok {
				g.LogLevel = l
			} else {
				d.errorf("global.log_level", "", "unknown log level %q (want debug, info, warn or error)", s)
			}
		}
	}
	if v, ok := m["max_concurrent"]; ok {
		n, ok := v.(int64)
		switch {
		case !ok:
			d.errorf("global.max_concurrent", "", "must be an integer, not %s", typeName(v))
		case n < 1 || n > MaxConcurrentLimit:
			d.errorf("global.max_concurrent", "", "must be between 1 and %d", MaxConcurrentLimit)
		default:
			g.MaxConcurrent = int(n)
		}
	}
	if v, ok := m["keyrings"]; ok {
		g.Keyrings = d.keyrings("global.keyrings", v)
	}
	if v, ok := m["handshake_timeout"]; ok {
		if t, ok := d.duration("global.handshake_timeout", v, false); ok {
			g.HandshakeTimeout = t
		}
	}
	if v, ok := m["first_flight_timeout"]; ok {
		if t, ok := d.duration("global.first_flight_timeout", v, false); ok {
			if t >= g.HandshakeTimeout {
				// It bounds only the first flight: as long as the
				// whole handshake, it would bound nothing.
				d.errorf("global.first_flight_timeout", "", "must be shorter than handshake_timeout (%v)", g.HandshakeTimeout)
			}
			g.FirstFlightTimeout = t
		}
	} else if g.FirstFlightTimeout >= g.HandshakeTimeout {
		// The default does not fit a short handshake_timeout: half of it.
		g.FirstFlightTimeout = g.HandshakeTimeout / 2
	}
	if v, ok := m["drain_timeout"]; ok {
		if t, ok := d.duration("global.drain_timeout", v, true); ok {
			g.DrainTimeout = t
		}
	}
	if v, ok := m["tpm_device"]; ok {
		if s, ok := d.str("global.tpm_device", v); ok {
			if !filepath.IsAbs(s) || strings.IndexByte(s, 0) >= 0 {
				d.errorf("global.tpm_device", "", "must be an absolute path, not %q", s)
			} else {
				g.TPMDevice = filepath.Clean(s)
			}
		}
	}
	return g
}

// debug decodes [debug]: keylog, an absolute path or "".
func (d *decoder) debug(v any) string {
	m, ok := d.table("debug", v)
	if !ok {
		return ""
	}
	d.known("debug", m, "keylog")
	s := ""
	if v, ok := m["keylog"]; ok {
		if s, ok = d.str("debug.keylog", v); ok && s != "" && (!filepath.IsAbs(s) || strings.IndexByte(s, 0) >= 0) {
			d.errorf("debug.keylog", "", "must be an absolute path, not %q", s)
			s = ""
		}
	}
	return s
}

// keyrings decodes names and serials; an integer or a string of decimal
// digits is a serial.
func (d *decoder) keyrings(path string, v any) []Keyring {
	l, ok := d.list(path, v)
	if !ok {
		return nil
	}
	out := []Keyring{}
	for i, e := range l {
		at := indexKey(path, i)
		var k Keyring
		switch e := e.(type) {
		case int64:
			if e <= 0 || e > math.MaxInt32 {
				d.errorf(path, at, "keyring serial %d out of range", e)
				continue
			}
			k.Serial = int32(e)
		case string:
			if n, err := strconv.ParseInt(e, 10, 32); err == nil {
				if n <= 0 {
					d.errorf(path, at, "keyring serial %d out of range", n)
					continue
				}
				k.Serial = int32(n)
			} else if e == "" || strings.IndexByte(e, 0) >= 0 || len(e) > 4095 {
				d.errorf(path, at, "bad keyring name %q", e)
				continue
			} else {
				k.Name = e
			}
		default:
			d.errorf(path, at, "keyring must be a name or a serial, not %s", typeName(e))
			continue
		}
		if slices.Contains(out, k) {
			d.errorf(path, at, "keyring %q is listed twice", k.String())
			continue
		}
		out = append(out, k)
	}
	return out
}

var settingsKeys = []string{"reject", "auth", "cipher_suites", "groups", "psk_modes", "timeout", "record_size_limit", "x509"}

var x509Keys = []string{"trust_anchors", "certificate", "private_key", "crl",
	"client_certificate", "allowed_names", "require_eku", "verify_peer_name", "reverse_dns"}

// settings decodes [client], [server] or the settings part of a [[peer]];
// role is the only role the table can apply to, 0 for either.
func (d *decoder) settings(path string, v any, role Role, extra ...string) *settingsSpec {
	sp := &settingsSpec{}
	m, ok := d.table(path, v)
	if !ok {
		return sp
	}
	d.known(path, m, append(slices.Clone(settingsKeys), extra...)...)
	key := func(k string) string { return joinKey(path, k) }

	if v, ok := m["reject"]; ok {
		if b, ok := d.boolean(key("reject"), v); ok {
			sp.reject = &b
		}
	}
	if v, ok := m["auth"]; ok {
		if a, ok := d.auth(key("auth"), v); ok {
			sp.auth = &a
		}
	}
	if v, ok := m["cipher_suites"]; ok {
		if l, ok := decodeSet(d, key("cipher_suites"), v, "cipher suite", parseSuite); ok {
			sp.cipherSuites = l
		}
	}
	if v, ok := m["groups"]; ok {
		if l, ok := decodeSet(d, key("groups"), v, "group", parseGroup); ok {
			sp.groups = l
		}
	}
	if v, ok := m["psk_modes"]; ok {
		if l, ok := decodeSet(d, key("psk_modes"), v, "PSK mode", ParsePSKMode); ok {
			sp.pskModes = l
		}
	}
	if v, ok := m["timeout"]; ok {
		if t, ok := d.duration(key("timeout"), v, true); ok {
			sp.timeout = &t
		}
	}
	if v, ok := m["record_size_limit"]; ok {
		// RFC 8449, 4: at least 64; at most 2^14+1 for TLS 1.3. 0: none.
		n, ok := v.(int64)
		switch {
		case !ok:
			d.errorf(key("record_size_limit"), "", "must be an integer, not %s", typeName(v))
		case n != 0 && (n < 64 || n > 1<<14+1):
			d.errorf(key("record_size_limit"), "", "must be 0 (none) or between 64 and 16385")
		default:
			l := int(n)
			sp.recordSize = &l
		}
	}
	if v, ok := m["x509"]; ok {
		d.x509(key("x509"), v, role, &sp.x509)
	}
	return sp
}

func eqComparable[T comparable](a, b T) bool { return a == b }

func parseSuite(s string) (tls13.CipherSuite, error) {
	c, err := tls13.ParseCipherSuite(s)
	if err != nil {
		return 0, fmt.Errorf("unknown cipher suite %q", s)
	}
	return c, nil
}

func parseGroup(s string) (tls13.Group, error) {
	g, err := tls13.ParseGroup(s)
	if err != nil {
		return 0, fmt.Errorf("unknown group %q", s)
	}
	return g, nil
}

// ParsePSKMode accepts "psk_dhe_ke" and "psk_ke".
func ParsePSKMode(s string) (tls13.PSKMode, error) {
	switch s {
	case "psk_dhe_ke":
		return tls13.PSKModeDHE, nil
	case "psk_ke":
		return tls13.PSKModeKE, nil
	}
	return 0, fmt.Errorf("unknown PSK mode %q (want psk_dhe_ke or psk_ke)", s)
}

// ParseAuthMode accepts "unauth", "psk" and "x509".
func ParseAuthMode(s string) (AuthMode, error) {
	for m := AuthUnauth; m <= AuthX509; m++ {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown auth mode %q (want any, psk, x509 or unauth)", s)
}

// ParseClientCertMode accepts "none", "optional" and "required".
func ParseClientCertMode(s string) (ClientCertMode, error) {
	for _, c := range []ClientCertMode{ClientCertNone, ClientCertOptional, ClientCertRequired} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown value %q (want none, optional or required)", s)
}

func (d *decoder) auth(path string, v any) (AuthModes, bool) {
	l, ok := d.list(path, v)
	if !ok {
		return 0, false
	}
	if len(l) == 0 {
		d.errorf(path, "", "must allow at least one mode (use reject = true to refuse every request)")
		return 0, false
	}
	var set AuthModes
	good, sawAny := true, false
	for i, e := range l {
		at := indexKey(path, i)
		s, ok := e.(string)
		if !ok {
			d.errorf(path, at, "auth mode must be a string, not %s", typeName(e))
			good = false
			continue
		}
		if s == "any" {
			sawAny = true
			set = AllAuthModes
			continue
		}
		m, err := ParseAuthMode(s)
		if err != nil {
			d.errorf(path, at, "%v", err)
			good = false
			continue
		}
		if set.Allows(m) && !sawAny {
			d.errorf(path, at, "auth mode %q is listed twice", s)
			good = false
		}
		set |= 1 << m
	}
	if sawAny && len(l) > 1 {
		d.errorf(path, "", "\"any\" cannot be combined with other modes")
		good = false
	}
	return set, good
}

func (d *decoder) x509(path string, v any, role Role, x *x509Spec) {
	m, ok := d.table(path, v)
	if !ok {
		return
	}
	d.known(path, m, x509Keys...)
	key := func(k string) string { return joinKey(path, k) }
	paths := func(k string) *[]string {
		v, ok := m[k]
		if !ok {
			return nil
		}
		l, ok := decodeList(d, key(k), v, "path", d.resolvePath, eqComparable)
		if !ok {
			return nil
		}
		return &l
	}
	single := func(k string) *string {
		v, ok := m[k]
		if !ok {
			return nil
		}
		s, ok := d.str(key(k), v)
		if !ok {
			return nil
		}
		if s == "" { // explicitly none
			return &s
		}
		p, err := d.resolvePath(s)
		if err != nil {
			d.errorf(key(k), "", "%v", err)
			return nil
		}
		return &p
	}
	x.trustAnchors = paths("trust_anchors")
	x.certificate = single("certificate")
	x.privateKey = single("private_key")
	x.crls = paths("crl")
	_, hasCert := m["certificate"]
	_, hasKey := m["private_key"]
	if hasCert != hasKey {
		d.errorf(path, "", "set certificate and private_key together")
	} else if x.certificate != nil && x.privateKey != nil && (*x.certificate == "") != (*x.privateKey == "") {
		d.errorf(path, "", "certificate and private_key must both be set or both be empty")
	}
	if v, ok := m["client_certificate"]; ok {
		k := key("client_certificate")
		if role == Client {
			d.errorf(k, "", "applies to servers only")
		} else if s, ok := d.str(k, v); ok {
			if c, err := ParseClientCertMode(s); err != nil {
				d.errorf(k, "", "%v", err)
			} else {
				x.clientCertificate = &c
			}
		}
	}
	if v, ok := m["allowed_names"]; ok {
		l, ok := decodeList(d, key("allowed_names"), v, "name", ParseNamePattern,
			func(a, b NamePattern) bool { return a.Kind == b.Kind && a.Value == b.Value })
		if ok {
			names := AllowedNames(l)
			x.allowedNames = &names
		}
	}
	if v, ok := m["require_eku"]; ok {
		if b, ok := d.boolean(key("require_eku"), v); ok {
			x.requireEKU = &b
		}
	}
	if v, ok := m["verify_peer_name"]; ok {
		k := key("verify_peer_name")
		if role == Server {
			d.errorf(k, "", "applies to clients only")
		} else if b, ok := d.boolean(k, v); ok {
			x.verifyPeerName = &b
		}
	}
	if v, ok := m["reverse_dns"]; ok {
		k := key("reverse_dns")
		if role == Server {
			d.errorf(k, "", "applies to clients only")
		} else if b, ok := d.boolean(k, v); ok {
			x.reverseDNS = &b
		}
	}
}

func (d *decoder) peers(v any) []*peer {
	if v == nil {
		return nil
	}
	var l []any
	switch v := v.(type) {
	case []map[string]any, []any:
		l, _ = d.list("peer", v)
	case map[string]any:
		d.errorf("peer", "", "must be an array of tables: write [[peer]], not [peer]")
		return nil
	default:
		d.errorf("peer", "", "must be an array of tables, not %s", typeName(v))
		return nil
	}
	var peers []*peer
	names := map[string]int{}
	catchAll, catchAllName := -1, ""
	for i, e := range l {
		path := indexKey("peer", i)
		m, ok := d.table(path, e)
		if !ok {
			continue
		}
		r := &peer{}
		if v, ok := m["name"]; !ok {
			d.errorf(path, "", "missing name")
		} else if s, ok := d.str(joinKey(path, "name"), v); ok {
			if strings.TrimSpace(s) == "" {
				d.errorf(joinKey(path, "name"), "", "must not be empty")
			} else if j, dup := names[s]; dup {
				d.errorf(joinKey(path, "name"), "", "%q is also the name of peer[%d]", s, j)
			} else {
				names[s] = i
				r.name = s
			}
		}
		if mv, ok := m["match"]; ok {
			r.match = d.match(joinKey(path, "match"), mv)
		}
		r.spec = d.settings(path, e, r.match.role, "name", "match")
		if catchAll >= 0 {
			d.errorf(path, "", "unreachable: peer[%d] (%q) has no match fields and matches every request",
				catchAll, catchAllName)
		} else if r.match.empty() {
			catchAll, catchAllName = i, r.name
		}
		peers = append(peers, r)
	}
	return peers
}

func (d *decoder) match(path string, v any) matcher {
	var mt matcher
	m, ok := d.table(path, v)
	if !ok {
		return mt
	}
	d.known(path, m, "role", "peer_name", "address", "psk_identity", "host_nqn", "subsys_nqn")
	key := func(k string) string { return joinKey(path, k) }
	if v, ok := m["role"]; ok {
		if s, ok := d.str(key("role"), v); ok {
			switch s {
			case "client":
				mt.role = Client
			case "server":
				mt.role = Server
			default:
				d.errorf(key("role"), "", "unknown role %q (want client or server)", s)
			}
		}
	}
	pattern := func(k string, fold bool) *glob {
		v, ok := m[k]
		if !ok {
			return nil
		}
		s, ok := d.str(key(k), v)
		if !ok {
			return nil
		}
		if s == "" {
			d.errorf(key(k), "", "empty pattern")
			return nil
		}
		g, err := compileGlob(s, fold)
		if err != nil {
			d.errorf(key(k), "", "bad pattern %q: %v", s, err)
			return nil
		}
		return g
	}
	mt.peerName = pattern("peer_name", true)
	mt.pskIdentity = pattern("psk_identity", false)
	mt.hostNQN = pattern("host_nqn", false)
	mt.subsysNQN = pattern("subsys_nqn", false)
	if v, ok := m["address"]; ok {
		l, ok := decodeList(d, key("address"), v, "address", parseAddrOrPrefix, eqComparable)
		switch {
		case ok && len(l) == 0:
			d.errorf(key("address"), "", "empty list matches nothing (leave address out to match any)")
		case ok:
			mt.addrs = l
		default:
			// Keep the rule from matching everything when its address
			// list is broken; the error stops the load anyway.
			mt.addrs = []netip.Prefix{}
		}
	}
	return mt
}
