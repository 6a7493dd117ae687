#!/bin/bash
# tests/lib/build.sh OUT [VERSION]: the tlshd-go binary, as tests, the VM,
# `make` and the Debian package build it: a position-independent executable
# (the daemon runs as root and parses network input, so its code is
# randomized too), without cgo, -trimpath, and no build-host paths or
# timestamps, so that two builds of one commit are byte-identical.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/ensure-go.sh
out=${1:-bin/tlshd-go}
version=${2:-}
if [ -z "$version" ]; then
	version=$(git describe --tags --dirty 2>/dev/null) ||
		version=0.1.0-dev+$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
fi
mkdir -p "$(dirname "$out")"
# -buildmode=pie without cgo links internally: the ELF is ET_DYN with
# /lib64/ld-linux-x86-64.so.2 as its interpreter and needs no shared
# library (the loader only relocates it), so it runs on any glibc system.
CGO_ENABLED=0 go build -buildmode=pie -trimpath -buildvcs=false \
	-ldflags "-s -w -buildid= -X main.version=${version#v}" -o "$out" ./cmd/tlshd-go
echo "built $out ($(go version | cut -d' ' -f3), version ${version#v})" >&2
