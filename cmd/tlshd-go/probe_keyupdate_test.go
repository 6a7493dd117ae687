package main

import (
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
)

func TestKeyUpdateRows(t *testing.T) {
	for _, tc := range []struct {
		caps genl.Capabilities
		want string
	}{
		{genl.Capabilities{Probed: true, SessionID: true}, "offered (DONE attribute 4 is SESSION_ID"},
		{genl.Capabilities{Probed: true, Tags: true}, "not offered (DONE attribute 4 is TAG"},
		{genl.Capabilities{Probed: true}, "not offered (no DONE attribute 4"},
		{genl.Capabilities{}, "cannot tell"},
	} {
		if got := keyUpdateRow(tc.caps); !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.caps, got, tc.want)
		}
	}
	for stat, want := range map[string]string{
		"TlsCurrTxSw 1\nTlsTxRekeyOk 0\nTlsRxRekeyOk 0\n": "kTLS rekey: yes",
		"TlsCurrTxSw 1\nTlsDecryptError 0\n":              "kTLS rekey: no",
	} {
		if got := ktlsRekeyRow([]byte(stat)); !strings.Contains(got, want) {
			t.Errorf("%q: %q, want %q", stat, got, want)
		}
	}
	if got := ktlsRekeyRow(nil); !strings.Contains(got, "cannot tell") {
		t.Errorf("no tls_stat: %q", got)
	}
}
