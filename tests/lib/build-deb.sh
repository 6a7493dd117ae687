#!/bin/bash
# tests/lib/build-deb.sh [OUTDIR]: the Debian package (debhelper through
# dpkg-buildpackage), from a copy of the tree's files (committed or not,
# ignored ones left out) so that the tree itself stays clean. Writes
# OUTDIR/tlshd-go_VERSION_ARCH.deb (default bin/deb) and runs lintian on it.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-bin/deb}")
need=()
for t in dpkg-buildpackage:dpkg-dev dh:debhelper go-md2man:go-md2man lintian:lintian; do
	command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
work=$(mktemp -d /tmp/tlshd-go-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/tlshd-go-$version
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
	[ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$src"
(cd "$src" && dpkg-buildpackage -b -us -uc --no-check-builddeps >&2)
mkdir -p "$out"
deb=$(ls "$work"/tlshd-go_"$version"_*.deb)
cp "$deb" "$out/"
deb=$out/$(basename "$deb")
echo "built $deb" >&2
lintian --fail-on warning "$deb" >&2 || {
	echo "lintian found problems (see above)" >&2
	exit 1
}
echo "$deb"
