package config

import (
	"maps"
	"slices"
	"testing"
)

func TestLocate(t *testing.T) {
	doc := `# comment [not a table]
top = "a # not a comment"         # line 2
[global]                          # 3
log_level = 'de"bug'              # 4
keyrings = [                      # 5
  ".nvme", # comment ]            # 6
  """multi
line""",                          # 8 ends here; element starts on 7
  '''lit ] '' ''',                # 9
  123,                            # 10
]
"quoted.key" = 1                  # 12
dotted . key = { a = 1, b = [1, 2] } # 13

[[peer]]                          # 15
name = "a"                        # 16
[peer.match]                      # 17
role = "client"                   # 18
[[peer]]                          # 19
name = "b"                        # 20
x509.crl = ["x"]                  # 21
[peer.match]                      # 22
when = 1979-05-27 07:32:00        # 23
after = 1                         # 24
[ "sp ace" . 'x' ]                # 25
k = """a\"""b""""                 # 26
j = 2                             # 27
`
	want := map[string]int{
		"top":                    2,
		"global":                 3,
		"global.log_level":       4,
		"global.keyrings":        5,
		"global.keyrings[0]":     6,
		"global.keyrings[1]":     7,
		"global.keyrings[2]":     9,
		"global.keyrings[3]":     10,
		`global."quoted.key"`:    12,
		"global.dotted":          13,
		"global.dotted.key":      13,
		"global.dotted.key.a":    13,
		"global.dotted.key.b":    13,
		"global.dotted.key.b[0]": 13,
		"global.dotted.key.b[1]": 13,
		"peer":                   15,
		"peer[0]":                15,
		"peer[0].name":           16,
		"peer[0].match":          17,
		"peer[0].match.role":     18,
		"peer[1]":                19,
		"peer[1].name":           20,
		"peer[1].x509":           21,
		"peer[1].x509.crl":       21,
		"peer[1].x509.crl[0]":    21,
		"peer[1].match":          22,
		"peer[1].match.when":     23,
		"peer[1].match.after":    24,
		`"sp ace".x`:             25,
		`"sp ace".x.k`:           26,
		`"sp ace".x.j`:           27,
	}
	got := locate([]byte(doc))
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("line of %s = %d (found %v), want %d", k, g, ok, w)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %s at line %d", k, got[k])
		}
	}
}

func TestKeyPart(t *testing.T) {
	for in, want := range map[string]string{
		"abc_-1": "abc_-1",
		"a.b":    `"a.b"`,
		"":       `""`,
		`a"b`:    `"a\"b"`,
		"é":      `"é"`,
	} {
		if got := keyPart(in); got != want {
			t.Errorf("keyPart(%q) = %s, want %s", in, got, want)
		}
	}
}
