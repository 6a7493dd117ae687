package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Import converts tlshd's configuration (ktls-utils /etc/tlshd.conf or
// /etc/tlshd/config, a GLib key file) into a tlshd-go policy. name is used
// in messages. Every key tlshd reads is converted or reported:
//
//	[debug]      loglevel       → global.log_level ("debug" if non-zero)
//	             tls, nl        (GnuTLS, libnl debug levels) → warning
//	             delay_done     → warning
//	[authenticate] keyrings     → global.keyrings, after .nvme, .nfs and
//	                              .nfsd, which tlshd always links
//	[authenticate.client] and [authenticate.server]:
//	             x509.truststore   → x509.trust_anchors
//	             x509.certificate  → x509.certificate
//	             x509.private_key  → x509.private_key (not GnuTLS URLs)
//	             x509.crl          → x509.crl
//	             x509.pq.certificate, x509.pq.private_key → warning
//
// A warning ("file:line: [group] key: ...") is returned for each key
// without an equivalent and for unknown groups and keys; the converted
// file lists them in a comment too. tlshd's defaults match tlshd-go's
// (optional client certificates, no EKU checks, server name checked
// against PEERNAME), so nothing else is written. The result always loads
// with Parse. An error means the input is not a key file GLib would load.
func Import(r io.Reader, name string) (toml []byte, warnings []string, err error) {
	toml, warnings, _, err = importLines(r, name)
	return toml, warnings, err
}

// importLines is Import, and also returns the line of the input that each
// key of the output comes from ("client.x509.certificate" → 17), so that
// problems with the converted policy point into the file the operator
// wrote.
func importLines(r io.Reader, name string) (toml []byte, warnings []string, lines map[string]int, err error) {
	kf, err := parseKeyFile(r, name)
	if err != nil {
		return nil, nil, nil, err
	}
	c := &converter{name: name, lines: make(map[string]int)}
	c.convert(kf)
	out := c.render()
	if _, err := Parse(out, name); err != nil {
		// Not expected: the converter writes only values it validated.
		return nil, c.warnings, nil, fmt.Errorf("config: import %s: converted policy does not load: %w", name, err)
	}
	return out, c.warnings, c.lines, nil
}

// keyFile is a parsed GLib key file. Later duplicates of a key replace
// earlier ones, as in GLib.
type keyFile struct {
	entries []*kfEntry
}

type kfEntry struct {
	group, key, value string
	line              int
	replaced          bool // a later line set the same key
}

func parseKeyFile(r io.Reader, name string) (*keyFile, error) {
	kf := &keyFile{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	group := ""
	seen := map[[2]string]*kfEntry{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if n == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		t := strings.TrimLeft(line, " \t\v\f")
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
			continue
		case t[0] == '[':
			t = strings.TrimRight(t, " \t\v\f")
			if !strings.HasSuffix(t, "]") || len(t) < 3 || strings.ContainsAny(t[1:len(t)-1], "[]") {
				return nil, fmt.Errorf("config: %s:%d: bad group header %q", name, n, t)
			}
			group = t[1 : len(t)-1]
			continue
		}
		key, value, ok := strings.Cut(t, "=")
		if !ok {
			return nil, fmt.Errorf("config: %s:%d: not a [group], key=value or comment: %q", name, n, t)
		}
		key = strings.TrimRight(key, " \t\v\f")
		if key == "" {
			return nil, fmt.Errorf("config: %s:%d: empty key", name, n)
		}
		if group == "" {
			return nil, fmt.Errorf("config: %s:%d: key %q before the first [group]", name, n, key)
		}
		e := &kfEntry{group: group, key: key, value: strings.Trim(value, " \t\v\f"), line: n}
		if prev := seen[[2]string{group, key}]; prev != nil {
			prev.replaced = true
		}
		seen[[2]string{group, key}] = e
		kf.entries = append(kf.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return kf, nil
}

// unescape decodes GLib string escapes (\s \n \t \r \\); a list element
// may also contain \; (and \,).
func unescape(s string, list bool) (string, bool) {
	if !strings.Contains(s, `\`) {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", false
		}
		switch s[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\':
			b.WriteByte('\\')
		case ';', ',':
			if !list {
				return "", false
			}
			b.WriteByte(s[i])
		default:
			return "", false
		}
	}
	return b.String(), true
}

// splitList splits a GLib string list on unescaped ';'; a trailing ';'
// ends the list.
func splitList(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ';':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

type x509Import struct {
	trust, cert, key, crl string
	certLine, keyLine     int
	trustLine, crlLine    int
}

type converter struct {
	name     string
	warnings []string
	wlines   []int // line of each warning, for sorting

	lines     map[string]int // output key → input line
	logLevel  string
	keyrings  []string // extra keyrings (names or serials), in order
	haveRings bool
	x509      [2]x509Import // client, server
}

func (c *converter) warn(e *kfEntry, format string, args ...any) {
	c.warnAt(e.line, e.group, e.key, format, args...)
}

func (c *converter) warnAt(line int, group, key, format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf("%s:%d: [%s] %s: %s",
		c.name, line, group, key, fmt.Sprintf(format, args...)))
	c.wlines = append(c.wlines, line)
}

// sortWarnings orders the warnings by line.
func (c *converter) sortWarnings() {
	idx := make([]int, len(c.warnings))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return c.wlines[idx[a]] < c.wlines[idx[b]] })
	w := make([]string, len(idx))
	for i, j := range idx {
		w[i] = c.warnings[j]
	}
	c.warnings = w
}

var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

func (c *converter) convert(kf *keyFile) {
	for _, e := range kf.entries {
		if e.replaced {
			c.warn(e, "set again later; the last value wins")
			continue
		}
		switch e.group {
		case "debug":
			c.debug(e)
		case "authenticate":
			if e.key != "keyrings" {
				c.warn(e, "unknown key; ignored")
				continue
			}
			c.haveRings = true
			c.lines["global.keyrings"] = e.line
			for _, raw := range splitList(e.value) {
				k, ok := unescape(raw, true)
				switch {
				case !ok:
					c.warn(e, "bad escape in %q; element ignored", raw)
				case k == "":
					c.warn(e, "empty keyring name ignored")
				case k == ".nvme" || k == ".nfs" || k == ".nfsd":
					// Always linked, as in tlshd.
				case strings.IndexByte(k, 0) >= 0 || len(k) > 4095 || !utf8.ValidString(k):
					c.warn(e, "bad keyring name %q ignored", k)
				default:
					if n, err := strconv.ParseInt(k, 10, 32); err == nil {
						if n <= 0 {
							c.warn(e, "keyring %q ignored: tlshd-go reads digits as a serial, and %d is not one", k, n)
							continue
						}
						c.warn(e, "keyring %q is a serial to tlshd-go (tlshd looks it up as a name)", k)
						k = strconv.FormatInt(n, 10)
					}
					if !slices.Contains(c.keyrings, k) {
						c.keyrings = append(c.keyrings, k)
					}
				}
			}
		case "authenticate.client":
			c.x509Key(e, &c.x509[0])
		case "authenticate.server":
			c.x509Key(e, &c.x509[1])
		case "main":
			c.warn(e, "[main] is the section name of ktls-utils before 0.11, which later versions ignore; not converted")
		default:
			c.warn(e, "unknown group; ignored")
		}
	}
	for i := range c.x509 {
		x := &c.x509[i]
		role := []string{"client", "server"}[i]
		if (x.cert == "") != (x.key == "") {
			line, key, other := x.certLine, "x509.certificate", "x509.private_key"
			if x.cert == "" {
				line, key, other = x.keyLine, other, key
			}
			c.warnAt(line, "authenticate."+role, key, "not converted: no usable %s (tlshd cannot use it either)", other)
			x.cert, x.key = "", ""
		}
		for k, line := range map[string]int{"trust_anchors": x.trustLine, "certificate": x.certLine,
			"private_key": x.keyLine, "crl": x.crlLine} {
			if line > 0 {
				c.lines[role+".x509."+k] = line
			}
		}
	}
	c.sortWarnings()
}

func (c *converter) debug(e *kfEntry) {
	switch e.key {
	case "loglevel":
		c.lines["global.log_level"] = e.line
		n, err := strconv.ParseInt(e.value, 10, 32)
		if err != nil {
			c.warn(e, "not an integer; tlshd reads it as 0")
			n = 0
		}
		if n != 0 {
			c.logLevel = "debug"
		} else {
			c.logLevel = "info"
		}
	case "tls":
		c.warn(e, "GnuTLS debug level has no equivalent; ignored (use log_level = \"debug\")")
	case "nl":
		c.warn(e, "libnl debug level has no equivalent; ignored")
	case "delay_done":
		c.warn(e, "delaying DONE is a test hook with no equivalent; ignored")
	default:
		c.warn(e, "unknown key; ignored")
	}
}

func (c *converter) x509Key(e *kfEntry, x *x509Import) {
	switch e.key {
	case "x509.truststore", "x509.certificate", "x509.private_key", "x509.crl":
	case "x509.pq.certificate", "x509.pq.private_key":
		c.warn(e, "ML-DSA certificates are not supported; ignored")
		return
	default:
		c.warn(e, "unknown key; ignored")
		return
	}
	v, ok := unescape(e.value, false)
	switch {
	case !ok:
		c.warn(e, "bad escape sequence; tlshd ignores the value too")
		return
	case v == "":
		c.warn(e, "empty value ignored")
		return
	case strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v):
		c.warn(e, "path contains a NUL byte or invalid UTF-8; ignored")
		return
	case !strings.HasPrefix(v, "/") && urlScheme.MatchString(v):
		c.warn(e, "GnuTLS URL %q has no equivalent; ignored (TPM keys: use a \"TSS2 PRIVATE KEY\" PEM file)", v)
		return
	case !strings.HasPrefix(v, "/"):
		abs := path.Join("/", v)
		c.warn(e, "relative path %q converted to %q (tlshd runs in /)", v, abs)
		v = abs
	}
	switch e.key {
	case "x509.truststore":
		x.trust, x.trustLine = v, e.line
	case "x509.certificate":
		x.cert, x.certLine = v, e.line
	case "x509.private_key":
		x.key, x.keyLine = v, e.line
	case "x509.crl":
		x.crl, x.crlLine = v, e.line
	}
}

func (c *converter) render() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Converted from %s by tlshd-go.\n", oneLine(c.name))
	b.WriteString("# Settings not written here keep tlshd-go's defaults, which match tlshd's.\n")
	if len(c.warnings) > 0 {
		b.WriteString("#\n# Import notes:\n")
		for _, w := range c.warnings {
			b.WriteString("#   " + oneLine(w) + "\n")
		}
	}
	if c.logLevel != "" || c.haveRings {
		b.WriteString("\n[global]\n")
		if c.logLevel != "" {
			kv(&b, "log_level", quote(c.logLevel))
		}
		if c.haveRings {
			rings := append([]string{".nvme", ".nfs", ".nfsd"}, c.keyrings...)
			b.WriteString("# tlshd always links .nvme, .nfs and .nfsd.\n")
			kv(&b, "keyrings", list(rings, func(s string) string { return s }))
		}
	}
	for i, x := range c.x509 {
		if x.trust == "" && x.cert == "" && x.crl == "" {
			continue
		}
		fmt.Fprintf(&b, "\n[%s.x509]\n", []string{"client", "server"}[i])
		if x.trust != "" {
			kv(&b, "trust_anchors", list([]string{x.trust}, func(s string) string { return s }))
		}
		if x.cert != "" {
			kv(&b, "certificate", quote(x.cert))
			kv(&b, "private_key", quote(x.key))
		}
		if x.crl != "" {
			kv(&b, "crl", list([]string{x.crl}, func(s string) string { return s }))
		}
	}
	return b.Bytes()
}
