package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake"
	"github.com/tlshd-go/tlshd-go/handshake/tpmkey"
)

// runCheck is `tlshd-go check [-c FILE] [--strict] [-q]`: it loads the
// policy with the daemon's own code (a tlshd.conf through the importer,
// every certificate, key, trust anchor and CRL read and parsed), then
// checks what the daemon will meet: the unit's sandbox, key file modes,
// expiry, chains, CRL freshness, keyrings and the descriptor budget. It
// prints every problem at once, errors first, then the policy in effect.
// Errors exit 1; warnings exit 0 unless --strict.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "policy `file` (default "+config.DefaultPath+"; without it, the built-in defaults)")
	quiet := fs.Bool("q", false, "only validate; print nothing but problems")
	strict := fs.Bool("strict", false, "exit 1 on warnings too")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "tlshd-go check: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	c, err := systemChecker()
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return c.run(*path, *quiet, *strict, stdout, stderr)
}

// run checks the policy at path ("" for the default path or, without a
// file there, the built-in defaults).
func (c *checker) run(path string, quiet, strict bool, stdout, stderr io.Writer) int {
	var p *config.Policy
	if path == "" {
		if _, err := os.Stat(c.defaultPath); errors.Is(err, os.ErrNotExist) {
			if !quiet {
				fmt.Fprintf(stderr, "no policy file %s: checking the built-in defaults\n", c.defaultPath)
			}
			p = config.Default()
		} else {
			path = c.defaultPath
		}
	}
	if p == nil {
		// The text first, so that the files can be checked even when
		// one of them does not load.
		text, err := config.ReadFile(path)
		if err != nil {
			for _, e := range flattenErrors(err) {
				c.errorf("", "%v", e)
			}
			c.report(stderr)
			return 1
		}
		if text.Converted() {
			c.warnf(path, "in tlshd's format: converted as the daemon does (keep a TOML copy with `tlshd-go config import`)")
			for _, w := range text.ImportWarnings() {
				c.warnf("", "%s", w)
			}
		}
		c.files(text)
		if p, err = policyOptions().Load(path); err != nil {
			for _, e := range flattenErrors(err) {
				c.errorf("", "%v", e)
			}
			p = text
		}
	}
	c.credentials(p)
	c.keyrings(p)
	c.fds(p)
	c.report(stderr)
	if c.errors() {
		return 1
	}
	if !quiet {
		c.summary(stdout, p)
		if err := p.WriteEffective(stdout); err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
	}
	if strict && len(c.findings) > 0 {
		return 1
	}
	return 0
}

// flattenErrors undoes errors.Join, so that each problem is its own line.
func flattenErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// policyOptions are how the daemon and check load a policy: TPM keys are
// matched against their certificates from the key file's public part.
func policyOptions() config.Options {
	return config.Options{TPMPublicKey: tpmkey.PublicKey}
}

// loadPolicy reads the policy as the daemon serves it. The default path
// may be absent (the built-in defaults apply); a file given with -c must
// exist. A file in tlshd's own format (tlshd.conf) is converted, with a
// warning, so that setups passing "-c /etc/tlshd.conf" keep working.
func loadPolicy(path string, log *slog.Logger) (*config.Policy, error) {
	if path == "" {
		if _, err := os.Stat(config.DefaultPath); errors.Is(err, os.ErrNotExist) {
			log.Info("no policy file; using the built-in defaults", "path", config.DefaultPath)
			return config.Default(), nil
		}
		path = config.DefaultPath
	}
	p, err := policyOptions().Load(path)
	if err != nil {
		return nil, err
	}
	if p.Converted() {
		log.Warn("the policy file is in tlshd's format; converted it (run `tlshd-go config import` to keep a TOML copy)", "path", path)
		for _, w := range p.ImportWarnings() {
			log.Warn("tlshd.conf", "warning", w)
		}
	}
	return p, nil
}

// checkFDLimit refuses a policy whose max_concurrent and queue cannot
// fit in this process's descriptor limit.
func checkFDLimit(p *config.Policy) error {
	return handshake.CheckFDLimit(p.Global().MaxConcurrent, currentNOFILE())
}

// runConfig is `tlshd-go config import [-o FILE] TLSHD.CONF`.
func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(stderr, "usage: tlshd-go config import [-o FILE] /etc/tlshd.conf")
		return 2
	}
	fs := flag.NewFlagSet("config import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the TOML policy to `file` instead of stdout")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: tlshd-go config import [-o FILE] /etc/tlshd.conf")
		return 2
	}
	in := fs.Arg(0)
	data, err := os.ReadFile(in)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	toml, warnings, err := config.Import(bytes.NewReader(data), in)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if *out == "" {
		stdout.Write(toml)
		return 0
	}
	if err := os.WriteFile(*out, toml, 0o644); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
