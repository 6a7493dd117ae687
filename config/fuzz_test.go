package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

func addSeeds(f *testing.F, files ...string) {
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzParse checks that Parse never panics, that every failure is made of
// *Error values, and that an accepted policy survives WriteEffective.
func FuzzParse(f *testing.F) {
	addSeeds(f, "example.toml", "testdata/default.effective.toml", "testdata/tlshd.conf.toml")
	f.Add([]byte(resolvePolicy))
	for _, tt := range badTests {
		f.Add([]byte(tt.file))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.toml")
		if err != nil {
			if p != nil {
				t.Fatal("policy and error both returned")
			}
			var u interface{ Unwrap() []error }
			errs := []error{err}
			if errors.As(err, &u) {
				errs = u.Unwrap()
			}
			for _, e := range errs {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("error %T %v is not an *Error", e, e)
				}
			}
			return
		}
		var b1, b2 bytes.Buffer
		if err := p.WriteEffective(&b1); err != nil {
			t.Fatal(err)
		}
		q, err := Parse(b1.Bytes(), "fuzz.toml")
		if err != nil {
			t.Fatalf("effective policy does not parse: %v\n%s", err, b1.Bytes())
		}
		if err := q.WriteEffective(&b2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
			t.Fatalf("WriteEffective not stable:\n%s\n---\n%s", b1.Bytes(), b2.Bytes())
		}
		for _, m := range probes {
			p.Resolve(m)
		}
	})
}

// FuzzImport checks that Import never panics and that whatever it
// accepts converts into a loadable policy.
func FuzzImport(f *testing.F) {
	addSeeds(f, "testdata/tlshd.conf")
	f.Add([]byte("[debug]\nloglevel=1\n[authenticate]\nkeyrings=a;b\\;c;\n"))
	f.Add([]byte("[authenticate.server]\nx509.certificate=a\nx509.private_key=b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, warnings, err := Import(bytes.NewReader(data), "fuzz.conf")
		if err != nil {
			if strings.Contains(err.Error(), "does not load") {
				t.Fatalf("converted policy rejected: %v", err)
			}
			return
		}
		if _, err := Parse(out, "fuzz.toml"); err != nil {
			t.Fatalf("Import output does not parse: %v\n%s", err, out)
		}
		for _, w := range warnings {
			if !strings.HasPrefix(w, "fuzz.conf:") {
				t.Fatalf("warning without position: %q", w)
			}
		}
	})
}

// FuzzLocate checks that the line finder terminates and never panics,
// whatever the input.
func FuzzLocate(f *testing.F) {
	addSeeds(f, "example.toml")
	f.Add([]byte(`a = """x""""` + "\n[[b]]\n[b.c]\nd = [{e = 1}, 'f']"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for k, line := range locate(data) {
			if line < 1 || line > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("key %s at line %d", k, line)
			}
		}
	})
}

// FuzzGlob checks that compiled patterns never panic when matching.
func FuzzGlob(f *testing.F) {
	f.Add("*.example.com", "a.example.com", true)
	f.Add("[!a-z]?\\*", "1x*", false)
	f.Fuzz(func(t *testing.T, pattern, s string, fold bool) {
		g, err := compileGlob(pattern, fold)
		if err != nil {
			return
		}
		g.match(s)
		if g.literal && !fold && g.match(s) != (g.lit == s) {
			t.Fatal("literal pattern mismatch")
		}
	})
}
