package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// A command is one subcommand of tlshd-go.
type command struct {
	name, synopsis, summary string
	run                     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order usage shows them. It is a
// function, not a package variable, so that it holds no state.
func commands() []command {
	return []command{
		{"connect", "[flags] HOST:PORT", "userspace TLS 1.3 client, like openssl s_client", runConnect},
		{"serve", "[flags] ADDR", "userspace TLS 1.3 echo server, like openssl s_server", runServe},
		{"check", "[-c FILE]", "validate the policy and print it in effect", helpExit0("check [-c FILE]", runCheck)},
		{"config", "import FILE", "convert a tlshd.conf to the TOML policy", helpExit0("config import FILE", runConfig)},
		{"probe", "[--json]", "report what the kernel offers the daemon", func(a []string, _ io.Reader, o, e io.Writer) int { return runProbe(a, o, e) }},
		{"status", "[--json|--prometheus]", "the running daemon's handshake counters", func(a []string, _ io.Reader, o, e io.Writer) int { return runStatus(a, o, e) }},
		{"version", "", "print the version", func(a []string, _ io.Reader, o, e io.Writer) int {
			if len(a) > 0 && isHelp(a[0]) {
				fmt.Fprintln(o, "usage: tlshd-go version\nPrint the version (tlshd-go -v prints it on stderr, as tlshd does).")
				return 0
			}
			if len(a) > 0 {
				return usageError(e, "version", fmt.Sprintf("unexpected argument %q", a[0]))
			}
			fmt.Fprintln(o, versionLine())
			return 0
		}},
		{"help", "[COMMAND]", "show the usage of tlshd-go or of a command", nil},
	}
}

// helpExit0 makes -h exit 0 with the usage on stdout for a command whose
// flag set (in configcmd.go) reports -h as a usage error.
func helpExit0(synopsis string, run func([]string, io.Writer, io.Writer) int) func([]string, io.Reader, io.Writer, io.Writer) int {
	return func(a []string, _ io.Reader, o, e io.Writer) int {
		if len(a) == 1 && isHelp(a[0]) {
			var b strings.Builder
			run(a, &b, &b)
			if !strings.Contains(b.String(), "usage: tlshd-go ") {
				fmt.Fprintf(o, "usage: tlshd-go %s\n", synopsis)
			}
			io.WriteString(o, b.String())
			return 0
		}
		return run(a, o, e)
	}
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// topUsage is the top-level usage: the daemon's synopsis and every
// subcommand.
func topUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: tlshd-go [-c FILE] [-s] [-v] [--log-level LEVEL]   run the daemon\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "       tlshd-go %-8s %-22s %s\n", c.name, c.synopsis, c.summary)
	}
	fmt.Fprintf(w, "Run 'tlshd-go help COMMAND' or 'tlshd-go COMMAND -h' for a command's flags; 'man 8 tlshd-go'.\n")
}

// runHelp is `tlshd-go help [COMMAND]`.
func runHelp(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		topUsage(stdout)
		return 0
	}
	if args[0] == "help" || isHelp(args[0]) {
		fmt.Fprintln(stdout, "usage: tlshd-go help [COMMAND]")
		return 0
	}
	c, ok := findCommand(args[0])
	if !ok {
		return unknownCommand(stderr, args[0])
	}
	return c.run([]string{"-h"}, stdin, stdout, stderr)
}

func unknownCommand(stderr io.Writer, name string) int {
	fmt.Fprintf(stderr, "tlshd-go: unknown command %q\n", name)
	fmt.Fprintln(stderr, "Run 'tlshd-go help' for the list of commands.")
	return 2
}

// usageError prints one error line and a hint, the way every command
// reports a usage mistake, and returns exit status 2.
func usageError(stderr io.Writer, name, msg string) int {
	fmt.Fprintf(stderr, "tlshd-go %s: %s\n", name, msg)
	fmt.Fprintf(stderr, "Run 'tlshd-go %s -h' for usage.\n", name)
	return 2
}

// cmdFlags is a subcommand's flag set and its help text.
type cmdFlags struct {
	*flag.FlagSet
	help func()
}

// newFlagSet makes a subcommand's flag set; its usage goes to stdout on
// -h (exit 0) and is never dumped on a mistake.
func newFlagSet(name, operands, summary string, stdout io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // the flag package calls it on every error
	help := func() {
		fmt.Fprintf(stdout, "usage: tlshd-go %s [flags] %s\n", name, operands)
		if summary != "" {
			fmt.Fprintf(stdout, "%s.\n", strings.ToUpper(summary[:1])+summary[1:])
		}
		fmt.Fprintln(stdout, "\nFlags (one or two dashes):")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return &cmdFlags{fs, help}
}

// parseFlags parses args into fs and wants exactly operands operands. It
// returns -1 if the command should go on, else the exit status: 0 after
// -h, 2 after a mistake (one line and a hint on stderr).
func parseFlags(fs *cmdFlags, args []string, operands int, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.help()
			return 0
		}
		return usageError(stderr, fs.Name(), err.Error())
	}
	rest := fs.Args()
	for i, a := range rest {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			if i == 0 {
				break
			}
			return usageError(stderr, fs.Name(), fmt.Sprintf("flag %s after %q: flags go before the operands", a, rest[0]))
		}
	}
	switch {
	case len(rest) < operands:
		return usageError(stderr, fs.Name(), "missing operand")
	case len(rest) > operands:
		return usageError(stderr, fs.Name(), fmt.Sprintf("unexpected argument %q", rest[operands]))
	}
	return -1
}
