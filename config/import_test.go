package config

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestImportTlshdConf converts a tlshd.conf that uses every documented
// key, compares the result with a golden file, checks the exact warnings
// and loads the result.
func TestImportTlshdConf(t *testing.T) {
	const in = "testdata/tlshd.conf"
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, warnings, err := Import(f, in)
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/tlshd.conf.toml"
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(want) {
		t.Errorf("Import output differs from %s (run with -update after checking):\n%s", golden, out)
	}

	wantWarnings := []string{
		in + `:7: [debug] tls: GnuTLS debug level has no equivalent; ignored (use log_level = "debug")`,
		in + `:8: [debug] nl: libnl debug level has no equivalent; ignored`,
		in + `:9: [debug] delay_done: delaying DONE is a test hook with no equivalent; ignored`,
		in + `:12: [authenticate] keyrings: keyring "4242" is a serial to tlshd-go (tlshd looks it up as a name)`,
		in + `:19: [authenticate.client] x509.pq.certificate: ML-DSA certificates are not supported; ignored`,
		in + `:20: [authenticate.client] x509.pq.private_key: ML-DSA certificates are not supported; ignored`,
		in + `:24: [authenticate.server] x509.certificate: not converted: no usable x509.private_key (tlshd cannot use it either)`,
		in + `:25: [authenticate.server] x509.private_key: GnuTLS URL "pkcs11:token=tlshd;object=server" has no equivalent; ignored (TPM keys: use a "TSS2 PRIVATE KEY" PEM file)`,
		in + `:26: [authenticate.server] x509.crl: relative path "crl/server.crl" converted to "/crl/server.crl" (tlshd runs in /)`,
		in + `:27: [authenticate.server] x509.pq.certificate: ML-DSA certificates are not supported; ignored`,
		in + `:28: [authenticate.server] x509.pq.private_key: ML-DSA certificates are not supported; ignored`,
		in + `:29: [authenticate.server] x509.colour: unknown key; ignored`,
		in + `:32: [tags] enabled: unknown group; ignored`,
		in + `:35: [main] keyrings: [main] is the section name of ktls-utils before 0.11, which later versions ignore; not converted`,
	}
	if !slices.Equal(warnings, wantWarnings) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}

	p, err := Parse(out, "converted.toml")
	if err != nil {
		t.Fatalf("converted policy does not load: %v", err)
	}
	g := p.Global()
	if g.LogLevel.String() != "DEBUG" {
		t.Errorf("log level %v", g.LogLevel)
	}
	var rings []string
	for _, k := range g.Keyrings {
		rings = append(rings, k.String())
	}
	if want := []string{".nvme", ".nfs", ".nfsd", "nfs-extra", "my keys", "semi;colon", "4242"}; !slices.Equal(rings, want) {
		t.Errorf("keyrings = %q, want %q", rings, want)
	}
	c := p.Defaults(Client).X509
	if !slices.Equal(c.TrustAnchors, []string{"/etc/tlshd/ca.pem"}) || c.Certificate != "/etc/tlshd/client.pem" ||
		c.PrivateKey != "/etc/tlshd/client.key" || !slices.Equal(c.CRLs, []string{"/etc/tlshd/ca.crl"}) {
		t.Errorf("client x509 = %+v", c)
	}
	s := p.Defaults(Server).X509
	if !slices.Equal(s.TrustAnchors, []string{"/etc/tlshd/clients-ca.pem"}) || s.Certificate != "" ||
		!slices.Equal(s.CRLs, []string{"/crl/server.crl"}) || s.ClientCertificate != ClientCertOptional {
		t.Errorf("server x509 = %+v", s)
	}
}

func importString(t *testing.T, s string) (string, []string, error) {
	t.Helper()
	out, w, err := Import(strings.NewReader(s), "tlshd.conf")
	return string(out), w, err
}

func TestImportCases(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		out, w, err := importString(t, "")
		if err != nil || len(w) != 0 {
			t.Fatalf("%v %q", err, w)
		}
		if strings.Contains(out, "[") {
			t.Errorf("empty input produced tables:\n%s", out)
		}
	})
	t.Run("loglevel zero", func(t *testing.T) {
		out, _, err := importString(t, "[debug]\nloglevel=0\n")
		if err != nil || !strings.Contains(out, `log_level = "info"`) {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("loglevel bad", func(t *testing.T) {
		out, w, err := importString(t, "[debug]\nloglevel=yes\n")
		if err != nil || !strings.Contains(out, `log_level = "info"`) ||
			!slices.Equal(w, []string{"tlshd.conf:2: [debug] loglevel: not an integer; tlshd reads it as 0"}) {
			t.Errorf("%v %q\n%s", err, w, out)
		}
	})
	t.Run("duplicate key", func(t *testing.T) {
		out, w, err := importString(t, "[authenticate.client]\nx509.truststore=/a\n[debug]\n[authenticate.client]\nx509.truststore=/b\n")
		if err != nil || !strings.Contains(out, `trust_anchors = ["/b"]`) ||
			!slices.Equal(w, []string{"tlshd.conf:2: [authenticate.client] x509.truststore: set again later; the last value wins"}) {
			t.Errorf("%v %q\n%s", err, w, out)
		}
	})
	t.Run("key only", func(t *testing.T) {
		_, w, err := importString(t, "[authenticate.client]\nx509.private_key=/k\n")
		if err != nil || !slices.Equal(w, []string{
			"tlshd.conf:2: [authenticate.client] x509.private_key: not converted: no usable x509.certificate (tlshd cannot use it either)"}) {
			t.Errorf("%v %q", err, w)
		}
	})
	t.Run("escapes", func(t *testing.T) {
		out, w, err := importString(t, "[authenticate.server]\nx509.truststore=/a\\sb\\\\c\nx509.crl=/x\\q\n")
		if err != nil || !strings.Contains(out, `trust_anchors = ["/a b\\c"]`) || strings.Contains(out, "crl =") ||
			!slices.Equal(w, []string{"tlshd.conf:3: [authenticate.server] x509.crl: bad escape sequence; tlshd ignores the value too"}) {
			t.Errorf("%v %q\n%s", err, w, out)
		}
	})
	t.Run("empty value", func(t *testing.T) {
		_, w, err := importString(t, "[authenticate.server]\nx509.truststore=\n")
		if err != nil || !slices.Equal(w, []string{"tlshd.conf:2: [authenticate.server] x509.truststore: empty value ignored"}) {
			t.Errorf("%v %q", err, w)
		}
	})
	t.Run("default keyrings only", func(t *testing.T) {
		out, w, err := importString(t, "[authenticate]\nkeyrings=.nvme;.nfsd\n")
		if err != nil || len(w) != 0 || !strings.Contains(out, `keyrings = [".nvme", ".nfs", ".nfsd"]`) {
			t.Errorf("%v %q\n%s", err, w, out)
		}
	})
	for _, bad := range []struct{ name, in, want string }{
		{"key before group", "loglevel=1\n", `config: tlshd.conf:1: key "loglevel" before the first [group]`},
		{"garbage", "[debug]\nloglevel\n", `config: tlshd.conf:2: not a [group], key=value or comment: "loglevel"`},
		{"bad header", "[debug\n", `config: tlshd.conf:1: bad group header "[debug"`},
		{"empty header", "[]\n", `config: tlshd.conf:1: bad group header "[]"`},
		{"empty key", "[debug]\n =1\n", `config: tlshd.conf:2: empty key`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, _, err := importString(t, bad.in)
			if err == nil || err.Error() != bad.want {
				t.Errorf("error %v, want %s", err, bad.want)
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":       nil,
		"a":      {"a"},
		"a;b;":   {"a", "b"},
		`a\;b;c`: {`a\;b`, "c"},
		"a;;b":   {"a", "", "b"},
		`a\\;b`:  {`a\\`, "b"},
		`trail\`: {`trail\`},
	} {
		if got := splitList(in); !slices.Equal(got, want) {
			t.Errorf("splitList(%q) = %q, want %q", in, got, want)
		}
	}
}
