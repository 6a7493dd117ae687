#!/bin/bash
# tests/lib/check-release.sh: what a release ships, checked without
# building the package: both man pages render without a groff or man
# warning at 80 columns, and tests/lib/build.sh makes a position-independent
# executable that is byte-identical when built twice, from two directories.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/ensure-go.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for page in docs/man/*.md; do
	out=$tmp/$(basename "$page" .md)
	go-md2man -in "$page" -out "$out"
	warnings=$(MANWIDTH=80 man --warnings -l "$out" 2>&1 >/dev/null) || { echo "man -l $page failed: $warnings" >&2; exit 1; }
	[ -z "$warnings" ] || { printf 'man warnings for %s:\n%s\n' "$page" "$warnings" >&2; exit 1; }
	echo "man page ok: $page"
done

tests/lib/build.sh "$tmp/a/tlshd-go" 0.0.0-check 2>/dev/null
# A second build from a copy of the tree elsewhere: -trimpath must keep
# the build directory out of the binary.
mkdir "$tmp/src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$tmp/src"
(cd "$tmp/src" && tests/lib/build.sh "$tmp/b/tlshd-go" 0.0.0-check 2>/dev/null)
cmp "$tmp/a/tlshd-go" "$tmp/b/tlshd-go" || { echo "two builds differ" >&2; exit 1; }
echo "reproducible: $(sha256sum <"$tmp/a/tlshd-go" | cut -d' ' -f1)"
file -b "$tmp/a/tlshd-go" | grep -q 'pie executable' || { echo "not a PIE: $(file -b "$tmp/a/tlshd-go")" >&2; exit 1; }
echo "PIE: $(file -b "$tmp/a/tlshd-go")"
# The daemon's start-up page release must survive the PIE's relocated
# RELRO pages (go test builds non-PIE unless told).
go test -count=1 -buildmode=pie -run TestReleaseStartupPages ./cmd/tlshd-go
