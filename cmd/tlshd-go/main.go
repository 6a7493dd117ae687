// Command tlshd-go is a TLS handshake agent for the Linux kernel's
// net/handshake upcall: a drop-in for ktls-utils' tlshd that serves
// NVMe/TCP (TLS 1.3 with external PSKs) and NFS over TLS (x509).
//
// Without a subcommand it runs the daemon. Subcommands:
//
//	tlshd-go connect [flags] HOST:PORT   userspace TLS 1.3 client (like openssl s_client)
//	tlshd-go serve [flags] ADDR          userspace TLS 1.3 echo server (like openssl s_server)
//	tlshd-go check [-c FILE]             validate the policy and print it in effect
//	tlshd-go config import FILE          convert a tlshd.conf to the TOML policy
//	tlshd-go probe [--json]              report what the kernel offers; exit 0 if it has the upcall
//	tlshd-go status [--json|--prometheus] the running daemon's counters
//	tlshd-go help [COMMAND]              usage of tlshd-go or of a command
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

const defaultHandshakeTimeout = 10 * time.Second

// init keeps main on the process's first thread until noHugePages has
// decided whether to re-execute: an execve from any other thread makes
// the kernel turn the thread-group leader into a zombie while it swaps
// threads, and a supervisor that reads /proc/PID/status at that moment
// sees the daemon exit at start.
func init() { runtime.LockOSThread() }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches to a subcommand or the daemon and returns the exit
// status; tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return runDaemon(args, stdout, stderr)
	}
	if args[0] == "help" {
		return runHelp(args[1:], stdin, stdout, stderr)
	}
	c, ok := findCommand(args[0])
	if !ok {
		return unknownCommand(stderr, args[0])
	}
	return c.run(args[1:], stdin, stdout, stderr)
}

// durationFlag is a flag.Value for durations that also accepts a bare
// number of seconds.
type durationFlag struct{ d time.Duration }

func (f *durationFlag) String() string { return f.d.String() }

func (f *durationFlag) Set(s string) error {
	if d, err := time.ParseDuration(s); err == nil {
		f.d = d
		return nil
	}
	var secs float64
	if _, err := fmt.Sscanf(s, "%g", &secs); err != nil {
		return fmt.Errorf("not a duration: %q", s)
	}
	f.d = time.Duration(secs * float64(time.Second))
	return nil
}
