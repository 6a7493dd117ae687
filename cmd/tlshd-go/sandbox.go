package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tlshd-go/tlshd-go/systemd"
)

// sandbox is what the service unit's [Service] section lets the daemon
// see, parsed from the unit and its drop-ins rather than assumed, so
// that `check` can tell an operator that a file the policy names is out
// of the daemon's sight. ProtectSystem= and ReadOnlyPaths= only make
// paths read-only, which a daemon that reads its files does not mind.
type sandbox struct {
	source         string // the unit files read, for messages
	protectHome    string // "no", "yes", "read-only", "tmpfs"
	privateTmp     bool
	privateDevices bool
	inaccessible   []string // InaccessiblePaths=
	tmpfs          []string // TemporaryFileSystem= mount points
	binds          []string // BindPaths=, BindReadOnlyPaths= destinations: visible
	deviceAllow    []string
	limitNOFILE    uint64 // hard limit; 0 when not set
}

// unitFiles are where an installed unit and its drop-ins live, in the
// order systemd applies them (later wins).
var unitDirs = []string{"/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system"}

// installedUnit returns the texts of the installed unit and its
// drop-ins, or the unit built into this binary when none is installed.
func installedUnit() (texts []string, names []string) {
	for _, d := range unitDirs {
		if b, err := os.ReadFile(filepath.Join(d, systemd.UnitName)); err == nil {
			texts, names = []string{string(b)}, []string{filepath.Join(d, systemd.UnitName)}
		}
	}
	if texts == nil {
		texts, names = []string{systemd.Unit}, []string{systemd.UnitName + " (as shipped)"}
	}
	for _, d := range append(unitDirs, "/run/systemd/system") {
		drop := filepath.Join(d, systemd.UnitName+".d")
		ents, _ := os.ReadDir(drop)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".conf") {
				if b, err := os.ReadFile(filepath.Join(drop, e.Name())); err == nil {
					texts = append(texts, string(b))
					names = append(names, filepath.Join(drop, e.Name()))
				}
			}
		}
	}
	return texts, names
}

// parseUnit reads the [Service] settings that decide what the daemon can
// see. texts are the unit, then its drop-ins: a later assignment of a
// single-valued setting replaces an earlier one; list settings add up, and
// an empty assignment clears them, as in systemd.
func parseUnit(source string, texts ...string) (*sandbox, error) {
	s := &sandbox{source: source, protectHome: "no"}
	for _, text := range texts {
		section := ""
		sc := bufio.NewScanner(strings.NewReader(text))
		var cont string
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if strings.HasSuffix(line, "\\") {
				cont += strings.TrimSuffix(line, "\\") + " "
				continue
			}
			line, cont = cont+line, ""
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			if line[0] == '[' {
				section = strings.Trim(line, "[]")
				continue
			}
			if section != "Service" {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "ProtectHome":
				if b, ok := parseBool(v); ok {
					s.protectHome = map[bool]string{true: "yes", false: "no"}[b]
				} else {
					s.protectHome = v
				}
			case "PrivateTmp":
				b, ok := parseBool(v)
				s.privateTmp = b || !ok // "disconnected" is private too
			case "PrivateDevices":
				s.privateDevices, _ = parseBool(v)
			case "InaccessiblePaths":
				s.inaccessible = addPaths(s.inaccessible, v, func(f string) string { return f })
			case "TemporaryFileSystem":
				s.tmpfs = addPaths(s.tmpfs, v, func(f string) string { p, _, _ := strings.Cut(f, ":"); return p })
			case "BindPaths", "BindReadOnlyPaths":
				s.binds = addPaths(s.binds, v, func(f string) string {
					src, dst, ok := strings.Cut(f, ":")
					if !ok {
						return src
					}
					dst, _, _ = strings.Cut(dst, ":")
					return dst
				})
			case "DeviceAllow":
				if v == "" {
					s.deviceAllow = nil
				} else {
					s.deviceAllow = append(s.deviceAllow, strings.Fields(v)[0])
				}
			case "LimitNOFILE":
				n, err := parseLimit(v)
				if err != nil {
					return nil, fmt.Errorf("%s: LimitNOFILE=%s: %w", source, v, err)
				}
				s.limitNOFILE = n
			}
		}
	}
	return s, nil
}

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}

// addPaths appends the space-separated paths of a list setting (each
// possibly prefixed with "-" or "+"), or clears the list on "".
func addPaths(l []string, v string, dest func(string) string) []string {
	if v == "" {
		return nil
	}
	for _, f := range strings.Fields(v) {
		f = strings.TrimLeft(f, "-+")
		if p := dest(f); p != "" {
			l = append(l, filepath.Clean(p))
		}
	}
	return l
}

// parseLimit returns the hard limit of "N", "SOFT:HARD" or "infinity":
// the Go runtime raises its soft RLIMIT_NOFILE to the hard one at start.
func parseLimit(v string) (uint64, error) {
	if _, hard, ok := strings.Cut(v, ":"); ok {
		v = hard
	}
	if v == "infinity" {
		return 1 << 62, nil
	}
	return strconv.ParseUint(v, 10, 64)
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// hides returns why the service cannot see path, or "" if it can. Both
// the path and what its symbolic links resolve to are tested: the mount
// namespace hides the target of a link as well.
func (s *sandbox) hides(path string) string {
	cands := []string{filepath.Clean(path)}
	if r, err := filepath.EvalSymlinks(path); err == nil && r != cands[0] {
		cands = append(cands, r)
	}
	for _, p := range cands {
		if why := s.hidesOne(p); why != "" {
			if p != cands[0] {
				why = fmt.Sprintf("it resolves to %s, and %s", p, why)
			}
			return why
		}
	}
	return ""
}

func (s *sandbox) hidesOne(p string) string {
	for _, b := range s.binds {
		if under(p, b) {
			return ""
		}
	}
	if s.protectHome == "yes" || s.protectHome == "tmpfs" {
		for _, d := range []string{"/home", "/root", "/run/user"} {
			if under(p, d) {
				return fmt.Sprintf("ProtectHome=%s hides %s from the service", s.protectHome, d)
			}
		}
	}
	if s.privateTmp {
		for _, d := range []string{"/tmp", "/var/tmp"} {
			if under(p, d) {
				return fmt.Sprintf("PrivateTmp=yes gives the service its own empty %s", d)
			}
		}
	}
	for _, d := range s.inaccessible {
		if under(p, d) {
			return fmt.Sprintf("InaccessiblePaths=%s", d)
		}
	}
	for _, d := range s.tmpfs {
		if under(p, d) {
			return fmt.Sprintf("TemporaryFileSystem=%s hides what is there", d)
		}
	}
	if s.privateDevices && under(p, "/dev") {
		return "PrivateDevices=yes gives the service a /dev with pseudo devices only"
	}
	return ""
}
