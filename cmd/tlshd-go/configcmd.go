package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tlshd-go/tlshd-go/config"
)

// runCheck is `tlshd-go check [-c FILE]`: it validates the policy and
// prints the policy in effect, defaults filled in.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", config.DefaultPath, "policy `file`")
	quiet := fs.Bool("q", false, "only validate; print nothing on success")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *quiet {
		return 0
	}
	if err := p.WriteEffective(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
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

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// looksLikeKeyFile tells a tlshd.conf from a broken TOML file: it has one
// of tlshd's group names.
func looksLikeKeyFile(b []byte) bool {
	for _, g := range []string{"[authenticate", "[debug]"} {
		if bytes.Contains(b, []byte(g)) {
			return true
		}
	}
	return false
}
