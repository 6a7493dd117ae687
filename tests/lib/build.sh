#!/bin/bash
# tests/lib/build.sh OUT [VERSION]: a static tlshd-go binary.
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
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${version#v}" -o "$out" ./cmd/tlshd-go
echo "built $out ($(go version | cut -d' ' -f3), version ${version#v})" >&2
