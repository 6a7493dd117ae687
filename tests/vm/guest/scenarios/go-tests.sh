#!/bin/bash
# go-tests: the project's Go tests that need a kernel with kTLS, compiled
# on the host (go test -c) and run here. /harness/go-tests/list names them,
# one "binary test-regexp" per line; the binaries sit beside it. Each must
# pass; a test that skips for lack of kTLS fails here (kTLS is loaded).
# tests/vm/e2e builds them: handshake/ktls (install, records, KeyUpdate),
# rekey (KeyUpdate through the kernel: refused before 6.14, rotating on
# 7.x), handshake (the daemon's production kTLS installer).
# RESULT keys: <binary>_rc, <binary>_passed, <binary>_skipped.
# shellcheck source=../lib.sh
. /harness/lib.sh
dir=/harness/go-tests
[ -r "$dir/list" ] || die "no $dir/list (tests/vm/e2e makes it)"
modprobe tls 2>/dev/null
while read -r bin re; do
	[ -n "$bin" ] || continue
	name=${bin%.test}
	(cd "$dir" && "./$bin" -test.v -test.count=1 -test.run "$re") >"/tmp/$name.out" 2>&1
	rc=$?
	sed "s/^/  [$name] /" "/tmp/$name.out"
	passed=$(grep -c -- '^--- PASS' "/tmp/$name.out")
	skipped=$(grep -c -- '--- SKIP' "/tmp/$name.out")
	result "${name}_rc" "$rc"
	result "${name}_passed" "$passed"
	result "${name}_skipped" "$skipped"
	((rc == 0)) || fail "$bin failed"
	((passed > 0)) || fail "$bin ran no test matching $re"
	((skipped == 0)) || fail "$bin skipped tests although kTLS is here"
done <"$dir/list"
finish
