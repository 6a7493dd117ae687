package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
)

// runProbe is `tlshd-go probe`: it reports what this kernel offers the
// daemon and exits 0 only if it has the handshake upcall.
func runProbe(stdout, stderr io.Writer) int {
	c, err := genl.Dial()
	if err != nil {
		if errors.Is(err, genl.ErrNoFamily) {
			fmt.Fprintln(stdout, "handshake upcall: missing (this kernel lacks net/handshake, CONFIG_NET_HANDSHAKE, Linux 6.5 or later)")
		} else {
			fmt.Fprintln(stdout, "handshake upcall: cannot tell:", err)
		}
		return 1
	}
	defer c.Close()
	caps := c.Capabilities()
	fmt.Fprintf(stdout, "handshake upcall: family id %d, version %d\n", caps.FamilyID, caps.Version)
	if caps.Probed {
		fmt.Fprintf(stdout, "  ACCEPT request attributes %v, DONE attributes %v (GETPOLICY)\n", caps.AcceptAttrs, caps.DoneAttrs)
	} else {
		fmt.Fprintf(stdout, "  GETPOLICY failed (%v); assuming DONE attributes %v\n", caps.ProbeErr, caps.DoneAttrs)
	}
	if _, err := os.Stat("/proc/net/tls_stat"); err == nil {
		fmt.Fprintln(stdout, "kTLS: loaded (/proc/net/tls_stat)")
	} else {
		fmt.Fprintln(stdout, "kTLS: not loaded (modprobe tls; the kernel also loads it on first use)")
	}
	fmt.Fprintln(stdout, keyUpdateRow(caps))
	fmt.Fprintln(stdout, ktlsRekeyRow(readTLSStat()))
	return 0
}
