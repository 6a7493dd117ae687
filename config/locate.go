package config

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The TOML library reports no positions for keys, and its key names carry
// no array indices ("peer.match.role" for every peer), so error messages
// find their line here: locate scans a document the library has already
// accepted and maps every key path, written as keyPath writes it
// ("peer[1].match.address[2]"), to the line where it is defined. On input
// that is not valid TOML it still terminates and never panics, but the
// lines it reports are then meaningless.

const maxLocateDepth = 256

type locator struct {
	s          []byte
	i          int
	lineStarts []int
	lines      map[string]int
	arrays     map[string]int // array-of-tables path → elements so far
}

func locate(data []byte) map[string]int {
	l := &locator{
		s:      data,
		lines:  make(map[string]int),
		arrays: make(map[string]int),
	}
	l.lineStarts = append(l.lineStarts, 0)
	for i, c := range data {
		if c == '\n' {
			l.lineStarts = append(l.lineStarts, i+1)
		}
	}
	l.document()
	return l.lines
}

// lineAt returns the 1-based line of byte offset off.
func (l *locator) lineAt(off int) int {
	return sort.Search(len(l.lineStarts), func(i int) bool { return l.lineStarts[i] > off })
}

func (l *locator) record(path string, off int) {
	if path == "" {
		return
	}
	if _, ok := l.lines[path]; !ok {
		l.lines[path] = l.lineAt(off)
	}
}

func (l *locator) eof() bool { return l.i >= len(l.s) }

func (l *locator) peek() byte {
	if l.eof() {
		return 0
	}
	return l.s[l.i]
}

// skipSpace skips blanks, and newlines and comments when nl is set.
func (l *locator) skipSpace(nl bool) {
	for !l.eof() {
		switch c := l.s[l.i]; {
		case c == ' ' || c == '\t':
			l.i++
		case nl && (c == '\n' || c == '\r'):
			l.i++
		case nl && c == '#':
			l.skipLine()
		default:
			return
		}
	}
}

func (l *locator) skipLine() {
	for !l.eof() && l.s[l.i] != '\n' {
		l.i++
	}
}

func (l *locator) document() {
	context := ""
	for {
		l.skipSpace(true)
		if l.eof() {
			return
		}
		start := l.i
		if l.peek() == '[' {
			context = l.header()
		} else {
			l.keyValue(context, 0)
			l.skipLine()
		}
		if l.i == start {
			l.i++
		}
	}
}

// header parses [a.b] or [[a.b]] and returns the new context.
func (l *locator) header() string {
	start := l.i
	l.i++ // [
	array := l.peek() == '['
	if array {
		l.i++
	}
	l.skipSpace(false)
	parts := l.key()
	l.skipSpace(false)
	for l.peek() == ']' {
		l.i++
	}
	l.skipLine()
	if len(parts) == 0 {
		return ""
	}
	path := ""
	for j, p := range parts {
		path = joinKey(path, p)
		if j == len(parts)-1 && array {
			break
		}
		if n := l.arrays[path]; n > 0 {
			path = indexKey(path, n-1)
		}
	}
	if array {
		l.record(path, start)
		n := l.arrays[path]
		l.arrays[path] = n + 1
		path = indexKey(path, n)
	}
	l.record(path, start)
	return path
}

// key parses a dotted key; it returns nil if there is none.
func (l *locator) key() []string {
	var parts []string
	for {
		l.skipSpace(false)
		part, ok := l.simpleKey()
		if !ok {
			return parts
		}
		parts = append(parts, part)
		l.skipSpace(false)
		if l.peek() != '.' {
			return parts
		}
		l.i++
	}
}

func isBare(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func (l *locator) simpleKey() (string, bool) {
	switch c := l.peek(); {
	case c == '"':
		return l.basicString(), true
	case c == '\'':
		return l.literalString(), true
	case isBare(c):
		start := l.i
		for !l.eof() && isBare(l.s[l.i]) {
			l.i++
		}
		return string(l.s[start:l.i]), true
	}
	return "", false
}

// keyValue parses "key = value" in context.
func (l *locator) keyValue(context string, depth int) {
	start := l.i
	parts := l.key()
	if len(parts) == 0 {
		return
	}
	path := context
	for _, p := range parts {
		path = joinKey(path, p)
		l.record(path, start)
	}
	l.skipSpace(false)
	if l.peek() != '=' {
		return
	}
	l.i++
	l.skipSpace(false)
	l.value(path, depth+1)
}

func (l *locator) value(path string, depth int) {
	if depth > maxLocateDepth {
		l.i = len(l.s)
		return
	}
	l.record(path, l.i)
	switch l.peek() {
	case '"':
		l.basicString()
	case '\'':
		l.literalString()
	case '[':
		l.i++
		for n := 0; ; {
			l.skipSpace(true)
			if l.eof() {
				return
			}
			if l.peek() == ']' {
				l.i++
				return
			}
			start := l.i
			l.value(indexKey(path, n), depth+1)
			n++
			l.skipSpace(true)
			if l.peek() == ',' {
				l.i++
			}
			if l.i == start {
				l.i++
			}
		}
	case '{':
		l.i++
		for {
			l.skipSpace(true)
			if l.eof() {
				return
			}
			switch l.peek() {
			case '}':
				l.i++
				return
			case ',':
				l.i++
				continue
			}
			start := l.i
			l.keyValue(path, depth)
			if l.i == start {
				l.i++
			}
		}
	default:
		l.scalar()
	}
}

// scalar skips a number, boolean or date-time.
func (l *locator) scalar() {
	start := l.i
	for !l.eof() {
		c := l.s[l.i]
		if c == ' ' && l.i-start == 10 && l.i+1 < len(l.s) &&
			'0' <= l.s[l.i+1] && l.s[l.i+1] <= '9' && l.s[start+4] == '-' {
			l.i++ // "1979-05-27 07:32:00": a date-time with a space
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' ||
			c == ']' || c == '}' || c == '#' {
			return
		}
		l.i++
	}
}

// basicString parses "..." or """...""" and returns its value.
func (l *locator) basicString() string {
	multi := l.hasPrefix(`"""`)
	if multi {
		l.i += 3
	} else {
		l.i++
	}
	var b strings.Builder
	for !l.eof() {
		c := l.s[l.i]
		switch {
		case c == '\\':
			l.i++
			l.escape(&b, multi)
		case c == '"' && !multi:
			l.i++
			return b.String()
		case c == '"' && l.hasPrefix(`"""`):
			// Up to two quotes before the closing three belong to the
			// string.
			n := 0
			for l.i+n < len(l.s) && l.s[l.i+n] == '"' && n < 5 {
				n++
			}
			b.WriteString(strings.Repeat(`"`, n-3))
			l.i += n
			return b.String()
		case c == '\n' && !multi:
			return b.String()
		default:
			b.WriteByte(c)
			l.i++
		}
	}
	return b.String()
}

func (l *locator) escape(b *strings.Builder, multi bool) {
	if l.eof() {
		return
	}
	c := l.s[l.i]
	l.i++
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case '"', '\\':
		b.WriteByte(c)
	case 'x', 'u', 'U':
		n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		if l.i+n > len(l.s) {
			l.i = len(l.s)
			return
		}
		v, err := strconv.ParseUint(string(l.s[l.i:l.i+n]), 16, 32)
		l.i += n
		if err == nil && utf8.ValidRune(rune(v)) {
			b.WriteRune(rune(v))
		}
	default:
		// A line-ending backslash in a multi-line string trims the
		// following whitespace.
		if multi && (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			for !l.eof() {
				switch l.s[l.i] {
				case ' ', '\t', '\r', '\n':
					l.i++
					continue
				}
				break
			}
		}
	}
}

// literalString parses a literal string, single- or triple-quoted, and
// returns its value.
func (l *locator) literalString() string {
	if l.hasPrefix(`'''`) {
		l.i += 3
		start := l.i
		for !l.eof() {
			if l.hasPrefix(`'''`) {
				n := 0
				for l.i+n < len(l.s) && l.s[l.i+n] == '\'' && n < 5 {
					n++
				}
				v := string(l.s[start : l.i+n-3])
				l.i += n
				return v
			}
			l.i++
		}
		return string(l.s[start:])
	}
	l.i++
	start := l.i
	for !l.eof() && l.s[l.i] != '\'' && l.s[l.i] != '\n' {
		l.i++
	}
	v := string(l.s[start:l.i])
	if l.peek() == '\'' {
		l.i++
	}
	return v
}

func (l *locator) hasPrefix(p string) bool {
	return strings.HasPrefix(string(l.s[l.i:min(len(l.s), l.i+len(p))]), p)
}

// keyPart writes one key the way TOML would: bare when possible, else
// quoted.
func keyPart(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBare(k[i]) {
			return quote(k)
		}
	}
	return k
}

func joinKey(path, k string) string {
	if path == "" {
		return keyPart(k)
	}
	return path + "." + keyPart(k)
}

func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
