package config

import (
	"strings"
	"testing"
)

func TestRecordSizeLimit(t *testing.T) {
	p := mustParse(t, "[client]\nrecord_size_limit = 512\n[[peer]]\nname = \"big\"\nmatch.peer_name = \"big\"\nrecord_size_limit = 16385\n")
	if got := p.Defaults(Client).RecordSizeLimit; got != 512 {
		t.Errorf("client limit %d, want 512", got)
	}
	if got := p.Defaults(Server).RecordSizeLimit; got != 0 {
		t.Errorf("server limit %d, want 0 (none)", got)
	}
	if got := p.Resolve(Match{Role: Client, PeerName: "big"}).RecordSizeLimit; got != 16385 {
		t.Errorf("peer rule limit %d, want 16385", got)
	}
	roundTrip(t, p, []Match{{Role: Client, PeerName: "big"}, {Role: Server}})
	for _, bad := range []string{"63", "16386", "-1", `"512"`} {
		_, err := Parse([]byte("[server]\nrecord_size_limit = "+bad+"\n"), "test.toml")
		if err == nil || !strings.Contains(err.Error(), "test.toml:2: server.record_size_limit") {
			t.Errorf("record_size_limit = %s: %v", bad, err)
		}
	}
}

func TestDebugKeyLog(t *testing.T) {
	if got := mustParse(t, "").Global().KeyLog; got != "" {
		t.Errorf("default keylog %q, want none", got)
	}
	p := mustParse(t, "[debug]\nkeylog = \"/run/tlshd-go/keys\"\n")
	if got := p.Global().KeyLog; got != "/run/tlshd-go/keys" {
		t.Errorf("keylog %q", got)
	}
	roundTrip(t, p, nil)
	for _, bad := range []string{`"relative"`, "1"} {
		if _, err := Parse([]byte("[debug]\nkeylog = "+bad+"\n"), "test.toml"); err == nil || !strings.Contains(err.Error(), "debug.keylog") {
			t.Errorf("keylog = %s: %v", bad, err)
		}
	}
}
