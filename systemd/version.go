package systemd

import (
	"strings"
	"unicode"
)

// KTLSUtilsCompat is the ktls-utils release whose tlshd interface
// tlshd-go provides: the kernel upcall, the keyrings linked by default
// (.nvme, .nfs, .nfsd), a unit reachable as tlshd.service and the
// --version line shape. blktests (nvme/062, nvme/063) requires at least
// 1.0.0. Raise it only when tlshd-go covers what a later release adds
// that such scripts test for.
const KTLSUtilsCompat = "1.0.0"

// VersionLine returns the one line tlshd-go prints for --version, e.g.
//
//	tlshd-go 0.1.0 (TLS handshake agent for kernel TLS consumers; replaces tlshd from ktls-utils 1.0.0)
//
// It names tlshd-go and its own version first, and ends with the only
// "utils <x.y.z>" in the line, which is what blktests extracts:
//
//	tlshd --version |& sed 's/.*utils \([0-9^.]*\).*/\1/'
//
// tlshd prints "<prog>, built from ktls-utils <x.y.z> on <date> <time>" to
// stderr; the parser reads stdout and stderr alike. A leading "v" is
// dropped from version, and an empty one becomes "devel".
func VersionLine(version string) string {
	version = strings.TrimPrefix(strings.TrimSpace(version), "v")
	version = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return '_'
		}
		return r
	}, version)
	// Keep the compatibility number the last "utils " in the line even
	// if a version string should contain one.
	version = strings.ReplaceAll(version, "utils", "util_s")
	if version == "" {
		version = "devel"
	}
	return "tlshd-go " + version +
		" (TLS handshake agent for kernel TLS consumers; replaces tlshd from ktls-utils " +
		KTLSUtilsCompat + ")"
}
