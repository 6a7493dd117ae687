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
}
