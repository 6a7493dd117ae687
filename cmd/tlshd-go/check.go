package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake"
	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/keyring"
	"golang.org/x/sys/unix"
)

// expiryWarning: a certificate that expires sooner is worth a warning.
const expiryWarning = 30 * 24 * time.Hour

// A finding is one problem `check` reports.
type finding struct {
	err   bool   // an error; otherwise a warning
	where string // "file:line: key" or ""
	msg   string
}

func (f finding) String() string {
	kind := "warning"
	if f.err {
		kind = "error"
	}
	if f.where == "" {
		return kind + ": " + f.msg
	}
	return kind + ": " + f.where + ": " + f.msg
}

// checker validates what the daemon will read, beyond what loading the
// policy already refuses. Its dependencies are fields so tests can swap
// them.
type checker struct {
	now     time.Time
	sandbox *sandbox // nil: no sandbox check
	// nofile is the descriptor limit the daemon will run with, and
	// where that figure comes from.
	nofile       uint64
	nofileSource string
	// findKeyring returns a keyring's serial by name (/proc/keys);
	// keyExists reports whether a serial names a key.
	findKeyring func(name string) (int32, error)
	keyExists   func(serial int32) bool
	// defaultPath is config.DefaultPath.
	defaultPath string

	findings []finding
}

func (c *checker) errorf(where, format string, args ...any) {
	c.findings = append(c.findings, finding{err: true, where: where, msg: fmt.Sprintf(format, args...)})
}

func (c *checker) warnf(where, format string, args ...any) {
	c.findings = append(c.findings, finding{where: where, msg: fmt.Sprintf(format, args...)})
}

// errors reports whether any finding is an error.
func (c *checker) errors() bool {
	return slices.ContainsFunc(c.findings, func(f finding) bool { return f.err })
}

func where(p *config.Policy, key string, line int) string {
	file := p.File()
	if file == "" {
		return key
	}
	if line > 0 {
		return fmt.Sprintf("%s:%d: %s", file, line, key)
	}
	return file + ": " + key
}

// files checks, for every file the policy names, what loading it does
// not: that the service's sandbox lets it be seen, that private keys are
// not readable by group or others, and that nobody but the owner can
// write what the daemon trusts. p need not be loaded.
func (c *checker) files(p *config.Policy) {
	for _, f := range p.Files() {
		at := where(p, f.Key, f.Line)
		if c.sandbox != nil {
			if why := c.sandbox.hides(f.Path); why != "" {
				c.errorf(at, "%s is out of the daemon's sight: %s (%s); move it under /etc/tlshd-go", f.Path, why, c.sandbox.source)
			}
		}
		fi, err := os.Stat(f.Path)
		if err != nil {
			continue // loading the policy reports it
		}
		mode := fi.Mode().Perm()
		if f.Kind == config.FilePrivateKey && mode&0o044 != 0 {
			c.errorf(at, "private key %s is readable by %s (mode %04o); fix: chmod go-rwx %s",
				f.Path, who(mode&0o044), mode, shellQuote(f.Path))
		} else if mode&0o022 != 0 {
			c.warnf(at, "%s is writable by %s (mode %04o), who could replace what the daemon trusts; fix: chmod go-w %s",
				f.Path, who(mode&0o022), mode, shellQuote(f.Path))
		}
	}
}

func who(bits os.FileMode) string {
	switch {
	case bits&0o070 != 0 && bits&0o007 != 0:
		return "group and others"
	case bits&0o070 != 0:
		return "its group"
	}
	return "others"
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// credentials checks what a loaded policy holds: certificate chains
// against their anchors, expiry, CRL freshness, and TPM keys against the
// unit's devices.
func (c *checker) credentials(p *config.Policy) {
	files := p.Files()
	whereOf := func(path string, kind config.FileKind) string {
		for _, f := range files {
			if f.Path == path && f.Kind == kind {
				return where(p, f.Key, f.Line)
			}
		}
		return path
	}
	seenCert := map[*certs.Credential]bool{}
	seenAnchor := map[string]bool{}
	seenCRL := map[*certs.CRLSet]bool{}
	tpm := false
	for _, s := range p.AllSettings() {
		comp := s.Credentials()
		if comp == nil {
			continue
		}
		for _, a := range comp.Anchors() {
			if seenAnchor[string(a.Raw)] {
				continue
			}
			seenAnchor[string(a.Raw)] = true
			c.validity(whereOf(s.X509.TrustAnchors[0], config.FileTrustAnchors), "trust anchor", a)
		}
		if set := comp.CRLs(); set != nil && !seenCRL[set] {
			seenCRL[set] = true
			for _, l := range set.Lists() {
				if !l.NextUpdate.IsZero() && c.now.After(l.NextUpdate) {
					at := ""
					if len(s.X509.CRLs) > 0 {
						at = whereOf(s.X509.CRLs[0], config.FileCRL)
					}
					c.warnf(at, "the CRL of %q was due for renewal at %s (next update passed); it still applies, but revocations since are unknown",
						l.Issuer.String(), l.NextUpdate.UTC().Format(time.RFC3339))
				}
			}
		}
		cred := comp.Credential()
		if cred == nil || seenCert[cred] {
			continue
		}
		seenCert[cred] = true
		at := whereOf(cred.CertFile, config.FileCertificate)
		if cred.IsTPM() {
			tpm = true
		}
		chain := cred.Chain()
		for i, x := range chain {
			what := "certificate"
			if i > 0 {
				what = "intermediate certificate"
			}
			c.validity(at, what, x)
		}
		roots, err := comp.Roots()
		if err != nil {
			c.warnf(at, "%v", err)
			continue
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), CurrentTime: c.now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		for _, x := range chain[1:] {
			opts.Intermediates.AddCert(x)
		}
		if _, err := chain[0].Verify(opts); err != nil {
			var inv x509.CertificateInvalidError
			if errors.As(err, &inv) && inv.Reason == x509.Expired {
				continue // reported above
			}
			anchors := "the system trust store"
			if len(s.X509.TrustAnchors) > 0 {
				anchors = "the configured trust_anchors"
			}
			c.warnf(at, "%s (%q) does not verify against %s: %v; peers must trust its issuer some other way",
				cred.CertFile, chain[0].Subject.String(), anchors, err)
		}
	}
	if tpm && c.sandbox != nil {
		dev := p.Global().TPMDevice
		if c.sandbox.privateDevices || c.sandbox.hides(dev) != "" {
			c.errorf(where(p, "global.tpm_device", p.LineOf("global.tpm_device")),
				"a TPM key is configured, but the service cannot open %s (PrivateDevices=yes in %s); install the drop-in tlshd-go.service.d/tpm.conf", dev, c.sandbox.source)
		} else if len(c.sandbox.deviceAllow) > 0 && !slices.Contains(c.sandbox.deviceAllow, dev) {
			c.errorf(where(p, "global.tpm_device", p.LineOf("global.tpm_device")),
				"a TPM key is configured, but DeviceAllow= in %s does not admit %s", c.sandbox.source, dev)
		}
	}
}

// validity reports an expired or not yet valid certificate (an error:
// every handshake with it fails) and one that expires within 30 days.
func (c *checker) validity(at, what string, x *x509.Certificate) {
	switch {
	case c.now.After(x.NotAfter):
		c.errorf(at, "%s %q expired at %s", what, x.Subject.String(), x.NotAfter.UTC().Format(time.RFC3339))
	case c.now.Before(x.NotBefore):
		c.errorf(at, "%s %q is not valid before %s", what, x.Subject.String(), x.NotBefore.UTC().Format(time.RFC3339))
	case x.NotAfter.Sub(c.now) < expiryWarning:
		c.warnf(at, "%s %q expires in %d days (%s)", what, x.Subject.String(),
			int(x.NotAfter.Sub(c.now).Hours()/24), x.NotAfter.UTC().Format(time.RFC3339))
	}
}

// keyrings checks that the keyrings the policy names exist. The default
// ones (.nvme, .nfs, .nfsd) appear only with their kernel modules
// (nvme-tcp, NFS over TLS), so a missing one is a warning; any other
// keyring the policy names is an error when missing: most likely a typo.
func (c *checker) keyrings(p *config.Policy) {
	at := where(p, "global.keyrings", p.LineOf("global.keyrings"))
	if !p.IsSet("global.keyrings") {
		at = "global.keyrings (default)"
	}
	for _, k := range p.Global().Keyrings {
		if k.Name != "" {
			_, err := c.findKeyring(k.Name)
			switch {
			case err == nil:
			case slices.Contains(moduleKeyrings, k.Name):
				c.warnf(at, "keyring %q not found: its kernel module creates it when loaded; until then requests find no keys there", k.Name)
			case errors.Is(err, keyring.ErrNotFound):
				c.errorf(at, "keyring %q not found", k.Name)
			default:
				c.errorf(at, "keyring %q: %v", k.Name, err)
			}
		} else if !c.keyExists(k.Serial) {
			c.errorf(at, "no key with serial %d", k.Serial)
		}
	}
}

// moduleKeyrings are created by kernel modules: nvme_keyring, and the
// NFS client and server when built with TLS.
var moduleKeyrings = []string{".nvme", ".nfs", ".nfsd"}

// fds checks the descriptor budget with the formula the daemon applies
// at start.
func (c *checker) fds(p *config.Policy) {
	if err := handshake.CheckFDLimit(p.Global().MaxConcurrent, c.nofile); err != nil {
		c.errorf(where(p, "global.max_concurrent", p.LineOf("global.max_concurrent")), "%v (%s)", err, c.nofileSource)
	}
}

// report prints the findings, errors first, each group in file order.
func (c *checker) report(w io.Writer) {
	sort.SliceStable(c.findings, func(i, j int) bool { return c.findings[i].err && !c.findings[j].err })
	for _, f := range c.findings {
		fmt.Fprintln(w, f)
	}
}

// systemChecker is the checker with the real system: the unit as
// installed (or as shipped), /proc/keys, RLIMIT_NOFILE.
func systemChecker() (*checker, error) {
	texts, names := installedUnit()
	sb, err := parseUnit(strings.Join(names, ", "), texts...)
	if err != nil {
		return nil, err
	}
	c := &checker{
		defaultPath: config.DefaultPath,
		now:         time.Now(),
		sandbox:     sb,
		findKeyring: func(name string) (int32, error) {
			s, err := keyring.FindKeyring(name)
			return int32(s), err
		},
		keyExists: func(serial int32) bool {
			_, err := keyring.Describe(keyring.Serial(serial))
			// ENOKEY (ErrNotFound) or EKEYREVOKED/EKEYEXPIRED: gone;
			// EACCES: there, but not ours to view.
			return err == nil || errors.Is(err, unix.EACCES)
		},
	}
	if sb.limitNOFILE > 0 {
		c.nofile, c.nofileSource = sb.limitNOFILE, "LimitNOFILE= in "+sb.source
	} else {
		c.nofile, c.nofileSource = currentNOFILE(), "RLIMIT_NOFILE here"
	}
	return c, nil
}

// currentNOFILE is this process's descriptor limit: the Go runtime has
// raised the soft limit to the hard one, as it does in the daemon.
func currentNOFILE() uint64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}

// summary writes, as TOML comments, what loading the policy read: each
// file and what it held.
func (c *checker) summary(w io.Writer, p *config.Policy) {
	var lines []string
	seen := map[string]bool{}
	for _, s := range p.AllSettings() {
		comp := s.Credentials()
		if comp == nil {
			continue
		}
		add := func(key, line string) {
			if !seen[line] {
				seen[line] = true
				lines = append(lines, fmt.Sprintf("#   %s: %s", key, line))
			}
		}
		if a := comp.Anchors(); len(a) > 0 {
			add("trust_anchors", fmt.Sprintf("%s: %d certificates", strings.Join(s.X509.TrustAnchors, ", "), len(a)))
		}
		if l := comp.CRLs().Lists(); len(l) > 0 {
			add("crl", fmt.Sprintf("%s: %d lists", strings.Join(s.X509.CRLs, ", "), len(l)))
		}
		if cr := comp.Credential(); cr != nil {
			leaf := cr.Chain()[0]
			key := "key in the file"
			if cr.IsTPM() {
				key = "TPM key"
			}
			add("certificate", fmt.Sprintf("%s: %q, %d in the chain, expires %s; %s %s", cr.CertFile, leaf.Subject.String(),
				len(cr.Chain()), leaf.NotAfter.UTC().Format(time.DateOnly), key, cr.KeyFile))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "# Loaded with the policy (read once; reload to pick up changes):")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
}
