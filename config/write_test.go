package config

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// roundTrip writes p, parses the output and checks that writing again
// gives the same text and that both policies resolve alike.
func roundTrip(t *testing.T, p *Policy, probes []Match) {
	t.Helper()
	var b1 bytes.Buffer
	if err := p.WriteEffective(&b1); err != nil {
		t.Fatal(err)
	}
	q, err := Parse(b1.Bytes(), p.File())
	if err != nil {
		t.Fatalf("effective policy does not parse: %v\n%s", err, b1.String())
	}
	var b2 bytes.Buffer
	if err := q.WriteEffective(&b2); err != nil {
		t.Fatal(err)
	}
	if b1.String() != b2.String() {
		t.Errorf("WriteEffective is not stable:\n--- first\n%s\n--- second\n%s", b1.String(), b2.String())
	}
	for _, m := range probes {
		if a, b := p.Resolve(m), q.Resolve(m); !equalSettings(a, b) {
			t.Errorf("Resolve(%+v) differs after the round trip:\n%+v\n%+v", m, a, b)
		}
	}
}

var probes = []Match{
	{Role: Client},
	{Role: Server},
	{Role: Server, Addr: netip.MustParseAddr("192.0.2.1")},
	{Role: Server, Addr: netip.MustParseAddr("198.51.100.7")},
	{Role: Client, Addr: netip.MustParseAddr("2001:db8:1::1")},
	{Role: Client, PeerName: "x.nfs.example.com"},
	{Role: Server, HostNQN: "nqn.2014-08.org.nvmexpress:uuid:1", SubsysNQN: "nqn.2024-01.com.example:subA"},
	{Role: Server, PSKIdentity: "NVMe0R01 bad x"},
	{Role: Client, Addr: netip.MustParseAddr("203.0.113.9")},
	{Role: Server, Addr: netip.MustParseAddr("192.0.2.9"), SubsysNQN: "nqn.2014-08.org.example:lab-1"},
}

func TestWriteEffectiveRoundTrip(t *testing.T) {
	t.Run("default", func(t *testing.T) { roundTrip(t, Default(), probes) })
	t.Run("resolve policy", func(t *testing.T) { roundTrip(t, mustParse(t, resolvePolicy), probes) })
	t.Run("example", func(t *testing.T) {
		p, err := parseExample(t)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, p, probes)
	})
	t.Run("odd strings", func(t *testing.T) {
		roundTrip(t, mustParse(t, `
[global]
keyrings = ["a\"b", "tab\there", 42, "ünï"]
[[peer]]
name = "quote\" and \\ backslash\u0001"
match.peer_name = "\\*literal\\?"
`), []Match{{Role: Client, PeerName: "*literal?"}})
	})
}

func TestWriteEffectiveDefault(t *testing.T) {
	var b bytes.Buffer
	if err := Default().WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/default.effective.toml")
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("WriteEffective(Default()) =\n%s\nwant (testdata/default.effective.toml)\n%s", b.String(), want)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:        `"plain"`,
		`a"b\c`:        `"a\"b\\c"`,
		"\b\t\n\f\r":   `"\b\t\n\f\r"`,
		"\x00\x1f\x7f": `"\u0000\u001F\u007F"`,
		"\xff":         "\"\uFFFD\"",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
	if s := oneLine("a\nb\x00c"); strings.ContainsAny(s, "\n\x00") {
		t.Errorf("oneLine left control characters: %q", s)
	}
}
