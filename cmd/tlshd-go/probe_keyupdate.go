package main

import (
	"bytes"
	"os"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
)

// keyUpdateRow says whether the kernel asks for KeyUpdates through the
// upcall (the unmerged proposal v7): only a DONE policy with attribute 4
// of type u32 (SESSION_ID) does.
func keyUpdateRow(caps genl.Capabilities) string {
	switch {
	case caps.SessionID:
		return "KeyUpdate upcalls: offered (DONE attribute 4 is SESSION_ID, u32: proposal v7); sessions are kept for them"
	case !caps.Probed:
		return "KeyUpdate upcalls: cannot tell (GETPOLICY failed); sessions are not kept"
	case caps.Tags:
		return "KeyUpdate upcalls: not offered (DONE attribute 4 is TAG, a string: the session-tags proposal)"
	}
	return "KeyUpdate upcalls: not offered (no DONE attribute 4 SESSION_ID)"
}

// ktlsRekeyRow says whether kTLS can change keys (Linux 6.14 added the
// rekey counters to /proc/net/tls_stat along with it); stat is that
// file, nil if it could not be read.
func ktlsRekeyRow(stat []byte) string {
	switch {
	case stat == nil:
		return "kTLS rekey: cannot tell (kTLS not loaded)"
	case bytes.Contains(stat, []byte("TlsTxRekeyOk")):
		return "kTLS rekey: yes (TLS_TX/TLS_RX can be set again, Linux 6.14 or later)"
	}
	return "kTLS rekey: no (this kernel refuses a second TLS_TX/TLS_RX; needs Linux 6.14)"
}

func readTLSStat() []byte {
	b, err := os.ReadFile("/proc/net/tls_stat")
	if err != nil {
		return nil
	}
	return b
}
