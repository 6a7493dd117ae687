package systemd

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// blktestsSed is blktests' extraction (tests/nvme/rc, _have_tlshd_ver):
//
//	tlshd --version |& sed 's/.*utils \([0-9^.]*\).*/\1/'
//
// sed works line by line and prints lines that do not match unchanged.
var blktestsSed = regexp.MustCompile(`^.*utils ([0-9^.]*).*$`)

// blktestsVersion reimplements _compare_three_version_numbers on the
// extracted text: `IFS='.' read -r a b c <<< "$1"` takes the first line,
// splits it at dots into three fields (the last keeps any further dots),
// and `local -i` evaluates each as an integer, "" being 0. ok is false
// where bash would fail the arithmetic.
func blktestsVersion(output string) (a, b, c int, ok bool) {
	lines := strings.Split(output, "\n")
	for i, l := range lines {
		lines[i] = blktestsSed.ReplaceAllString(l, "$1")
	}
	first := lines[0]
	fields := strings.SplitN(first, ".", 3)
	var v [3]int
	for i := range fields {
		f := strings.TrimSpace(fields[i])
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return 0, 0, 0, false
		}
		v[i] = n
	}
	return v[0], v[1], v[2], true
}

// blktestsAccepts is _have_tlshd_ver 1 0 0.
func blktestsAccepts(output string) bool {
	a, b, c, ok := blktestsVersion(output)
	return ok && a*65536+b*256+c >= 1*65536+0*256+0
}

func TestBlktestsParser(t *testing.T) {
	// The parser itself, on tlshd's own output.
	if !blktestsAccepts("tlshd, built from ktls-utils 1.0.0 on May  5 2025 12:00:00\n") {
		t.Error("rejects tlshd 1.0.0")
	}
	if blktestsAccepts("tlshd, built from ktls-utils 0.11 on Jun  5 2024 12:00:00\n") {
		t.Error("accepts tlshd 0.11")
	}
	if blktestsAccepts("tlshd-go 0.1.0\n") {
		t.Error("accepts a line without utils")
	}
}

func TestVersionLine(t *testing.T) {
	for _, v := range []string{"0.1.0", "v0.1.0", "1.2.3-rc.1+dirty", "(devel)", "", "v0.0.0-20260901120000-abcdef123456",
		"0.1.0\nutils 0.0.1", "5.0 utils 0.0.0"} {
		line := VersionLine(v)
		if strings.ContainsAny(line, "\n\r") {
			t.Errorf("VersionLine(%q) = %q: more than one line", v, line)
		}
		if !strings.HasPrefix(line, "tlshd-go ") {
			t.Errorf("VersionLine(%q) = %q: does not start with tlshd-go", v, line)
		}
		if strings.Contains(line, "built from ktls-utils") {
			t.Errorf("VersionLine(%q) = %q claims to be built from ktls-utils", v, line)
		}
		for _, out := range []string{line, line + "\n"} {
			a, b, c, ok := blktestsVersion(out)
			if !ok || !blktestsAccepts(out) {
				t.Errorf("blktests rejects %q (%d.%d.%d ok=%v)", out, a, b, c, ok)
			}
			if got := strconv.Itoa(a) + "." + strconv.Itoa(b) + "." + strconv.Itoa(c); got != KTLSUtilsCompat {
				t.Errorf("blktests reads %s from %q, want %s", got, out, KTLSUtilsCompat)
			}
		}
	}
	if got, want := VersionLine("v0.1.0"),
		"tlshd-go 0.1.0 (TLS handshake agent for kernel TLS consumers; replaces tlshd from ktls-utils 1.0.0)"; got != want {
		t.Errorf("VersionLine = %q, want %q", got, want)
	}
	if got := VersionLine(""); !strings.HasPrefix(got, "tlshd-go devel ") {
		t.Errorf("VersionLine(\"\") = %q", got)
	}
}
