# Sourced by the test and build scripts: puts a Go >= 1.26 first in PATH.
# Debian's own packages stop at Go 1.19, so when no suitable go is found
# the toolchain is fetched from the Go module proxy (golang.org/toolchain,
# the same zip `GOTOOLCHAIN=auto` uses) into a cache directory.
GO_WANT=${GO_WANT:-1.26.8}
go_ok() {
	local v
	v=$("$1" env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	[ "$(printf '%s\n%s\n' "1.26" "$v" | sort -V | head -n1)" = 1.26 ]
}
ensure_go() {
	local g
	for g in "$(command -v go 2>/dev/null)" /usr/local/go/bin/go; do
		if [ -n "$g" ] && [ -x "$g" ] && go_ok "$g"; then
			PATH=$(dirname "$g"):$PATH
			return 0
		fi
	done
	local cache=${XDG_CACHE_HOME:-$HOME/.cache}/tlshd-go/go$GO_WANT
	if [ ! -x "$cache/go/bin/go" ]; then
		local arch
		case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) echo "no Go toolchain for $(uname -m)" >&2; return 1 ;; esac
		local proxy=${GOPROXY:-https://proxy.golang.org}
		proxy=${proxy%%,*}
		local url="$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_WANT.linux-$arch.zip"
		command -v curl >/dev/null && command -v unzip >/dev/null ||
			{ [ "$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl unzip ca-certificates >/dev/null; }
		echo ">>> fetching Go $GO_WANT from $url" >&2
		mkdir -p "$cache.tmp"
		curl -fsSL "$url" -o "$cache.tmp/go.zip" || { echo "cannot download Go $GO_WANT" >&2; return 1; }
		# The zip holds golang.org/toolchain@.../ with the Go tree inside.
		(cd "$cache.tmp" && unzip -q go.zip && rm go.zip)
		rm -rf "$cache" && mkdir -p "$cache"
		mv "$cache.tmp"/golang.org/toolchain@*/ "$cache/go"
		chmod +x "$cache/go/bin/"* "$cache/go/pkg/tool/"*/* 2>/dev/null
		rm -rf "$cache.tmp"
	fi
	PATH=$cache/go/bin:$PATH
	export GOTOOLCHAIN=local
}
ensure_go || exit 1
export PATH
