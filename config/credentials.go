package config

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/tlshd-go/tlshd-go/handshake/certs"
)

// Options change how a policy's files are loaded.
type Options struct {
	// TPMPublicKey returns the public key of a TPM key file ("TSS2
	// PRIVATE KEY" PEM) without a TPM, so that it is matched against its
	// certificate when the policy loads (package tpmkey has one). Nil
	// leaves the check to the first handshake.
	TPMPublicKey func(tss2PEM []byte) (crypto.PublicKey, error)
}

// Load reads a policy file and loads every file it names (see Compile).
// A file in tlshd's own format (tlshd.conf) is converted with Import
// first; Converted and ImportWarnings then say so.
func Load(path string) (*Policy, error) { return Options{}.Load(path) }

// Load is Load with options.
func (o Options) Load(path string) (*Policy, error) {
	p, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := o.loadFiles(p); err != nil {
		return nil, err
	}
	return p, nil
}

// ReadFile reads and parses a policy file as Load does, converting a
// tlshd.conf, but reads none of the files it names (see Parse).
func ReadFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	base := filepath.Dir(path)
	if abs, err := filepath.Abs(path); err == nil {
		base = filepath.Dir(abs)
	}
	p, err := parse(data, path, base)
	if err == nil {
		return p, nil
	}
	if !looksLikeTlshdConf(path, data) {
		return nil, err
	}
	// tlshd's format: its importer's verdict is the one that counts.
	converted, warnings, lines, err := importLines(bytes.NewReader(data), path)
	if err != nil {
		return nil, err
	}
	if p, err = parse(converted, path+" (converted from tlshd format)", base); err != nil {
		return nil, err
	}
	// Problems point at the lines of tlshd.conf the values came from.
	p.file, p.lines = path, lines
	p.converted, p.importWarnings = true, warnings
	return p, nil
}

// Compile parses a policy as Parse does and loads every file it names, as
// Load does: what a daemon serves with.
func (o Options) Compile(data []byte, name string) (*Policy, error) {
	p, err := parse(data, name, filepath.Dir(name))
	if err != nil {
		return nil, err
	}
	if err := o.loadFiles(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Compile is Options{}.Compile.
func Compile(data []byte, name string) (*Policy, error) { return Options{}.Compile(data, name) }

// looksLikeTlshdConf tells a tlshd.conf (a GLib key file) from a broken
// TOML policy: tlshd's file names, or one of its group headers.
func looksLikeTlshdConf(path string, data []byte) bool {
	if filepath.Base(path) == "tlshd.conf" || strings.HasSuffix(path, "/tlshd/config") {
		return true
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if bytes.HasPrefix(line, []byte("[authenticate")) || bytes.Equal(line, []byte("[debug]")) {
			return true
		}
	}
	return false
}

// Converted reports whether the policy was converted from tlshd's format.
// Its File is then the tlshd.conf, and LineOf and Files give the lines
// of tlshd.conf that each value was converted from.
func (p *Policy) Converted() bool { return p.converted }

// ImportWarnings are the importer's warnings for a converted policy.
func (p *Policy) ImportWarnings() []string { return p.importWarnings }

// Credentials returns the x509 configuration these settings name, loaded
// once for the policy's generation: trust anchors, CRLs, name patterns,
// certificate and key. It is nil for a policy from Parse, which reads no
// files; Load, Compile and Default fill it.
func (s *Settings) Credentials() *certs.Compiled { return s.creds }

// A FileKind is what a policy file holds.
type FileKind string

const (
	FileTrustAnchors FileKind = "trust_anchors"
	FileCertificate  FileKind = "certificate"
	FilePrivateKey   FileKind = "private_key"
	FileCRL          FileKind = "crl"
)

// A FileRef is a file the policy names.
type FileRef struct {
	Path string
	Kind FileKind
	Key  string // "peer[1].x509.certificate"
	Line int    // 0 when unknown
}

// Files lists every file the policy names, in file order, with where it
// is named. The same file named twice is listed twice.
func (p *Policy) Files() []FileRef {
	var out []FileRef
	add := func(key, at string, kind FileKind, path string) {
		out = append(out, FileRef{Path: path, Kind: kind, Key: key, Line: p.lineOf(at)})
	}
	for _, t := range p.tables() {
		x := &t.spec.x509
		key := func(k string) string { return t.name + ".x509." + k }
		if x.trustAnchors != nil {
			for i, f := range *x.trustAnchors {
				add(key("trust_anchors"), indexKey(key("trust_anchors"), i), FileTrustAnchors, f)
			}
		}
		if x.certificate != nil && *x.certificate != "" {
			add(key("certificate"), key("certificate"), FileCertificate, *x.certificate)
		}
		if x.privateKey != nil && *x.privateKey != "" {
			add(key("private_key"), key("private_key"), FilePrivateKey, *x.privateKey)
		}
		if x.crls != nil {
			for i, f := range *x.crls {
				add(key("crl"), indexKey(key("crl"), i), FileCRL, f)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// LineOf returns the line where a key ("global.keyrings") is set, 0 if it
// is not set or unknown.
func (p *Policy) LineOf(key string) int { return p.lineOf(key) }

// IsSet reports whether the policy file sets a key ("global.keyrings")
// rather than leaving it to the defaults.
func (p *Policy) IsSet(key string) bool {
	_, ok := p.lines[key]
	return ok
}

func (p *Policy) lineOf(at string) int {
	for ; at != ""; at = parentKey(at) {
		if n, ok := p.lines[at]; ok {
			return n
		}
	}
	return 0
}

type table struct {
	name string
	spec *settingsSpec
}

func (p *Policy) tables() []table {
	t := []table{{"client", p.specs[0]}, {"server", p.specs[1]}}
	for i, r := range p.peers {
		t = append(t, table{indexKey("peer", i), r.spec})
	}
	return t
}

// AllSettings returns every Settings value of the policy: the [client]
// and [server] defaults, then each rule's, in file order. They are shared
// and must not be modified.
func (p *Policy) AllSettings() []*Settings {
	s := []*Settings{p.client, p.server}
	for _, r := range p.peers {
		if r.client != nil {
			s = append(s, r.client)
		}
		if r.server != nil {
			s = append(s, r.server)
		}
	}
	return s
}

func filesOf(x *X509) certs.Files {
	return certs.Files{
		TrustAnchors: x.TrustAnchors,
		CRLs:         x.CRLs,
		Certificate:  x.Certificate,
		PrivateKey:   x.PrivateKey,
		AllowedNames: x.AllowedNames.Strings(),
	}
}

// loadFiles loads the x509 files of every table of p, once each, and
// attaches the result to every Settings. p is not yet shared: this is
// part of building it.
func (o Options) loadFiles(p *Policy) error {
	l := &certs.Loader{TPMPublicKey: o.TPMPublicKey}
	// Each table's own files first, so that an error names the table
	// that names the file.
	var errs []*Error
	for _, t := range p.tables() {
		x := &t.spec.x509
		var f certs.Files
		if x.trustAnchors != nil {
			f.TrustAnchors = *x.trustAnchors
		}
		if x.crls != nil {
			f.CRLs = *x.crls
		}
		if x.certificate != nil {
			f.Certificate = *x.certificate
		}
		if x.privateKey != nil {
			f.PrivateKey = *x.privateKey
		}
		if x.allowedNames != nil {
			f.AllowedNames = x.allowedNames.Strings()
		}
		_, err := l.Load(f)
		for _, e := range flatten(err) {
			key := t.name + ".x509"
			at := key
			var le *certs.LoadError
			if errors.As(e, &le) {
				key = key + "." + le.Field
				at = key
				var list []string
				switch le.Field {
				case "trust_anchors":
					list = f.TrustAnchors
				case "crl":
					list = f.CRLs
				}
				if i := slices.Index(list, le.Path); i >= 0 {
					at = indexKey(key, i)
				}
			}
			errs = append(errs, &Error{File: p.file, Key: key, Msg: e.Error(), Line: p.lineOf(at), cause: e})
		}
	}
	if len(errs) == 0 {
		for _, s := range p.AllSettings() {
			c, err := l.Load(filesOf(&s.X509))
			if err != nil {
				errs = append(errs, &Error{File: p.file, Key: s.Role.String(), Msg: err.Error()})
				continue
			}
			s.creds = c
		}
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// flatten undoes errors.Join.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
