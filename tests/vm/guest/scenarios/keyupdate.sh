#!/bin/bash
# keyupdate: the proposed KeyUpdate upcall (net/handshake v7, not in any
# released kernel) served by tlshd-go on real kTLS. No kernel has the
# upcall, so a Go test driver plays the kernel's side
# (handshake.test -test.run ^TestKeyUpdateVM$): the fake kernel hands the
# daemon a real socket for its first handshake (production kTLS installer,
# sessions in a kernel keyring), then sends the v7 KeyUpdate requests with
# the SESSION_ID DONE returned, while the driver moves application data
# through kTLS as NVMe would. Peers: the rekey package, OpenSSL s_server and
# s_client (PSK; "k"/"K" make OpenSSL send KeyUpdates). Checked: send,
# received and received_request_update each with checksummed data both ways
# after it and the rekeys in /proc/net/tls_stat; 1000 updates in a row; a
# daemon restart between two updates; a stale id (ENOKEY, no rekey); a peer
# that closes during an update (ECONNRESET, our close_notify). On a kernel
# whose kTLS cannot change keys (6.12) the driver checks the clean refusal
# (EOPNOTSUPP after close_notify, the session forgotten) instead.
# The binary is /harness/go-tests/handshake.test (tests/vm/e2e ships it;
# by hand: EXTRA_FILES="handshake.test:/harness/go-tests/handshake.test").
# RESULT keys: kernel_rekey, test_rc, passed, and what the driver reports
# (rekey_peer_TlsTxRekeyOk, openssl_s_server_rekeys, updates_in_a_row,
# us_per_update_in_a_row, refusal).
# shellcheck source=../lib.sh
. /harness/lib.sh
bin=/harness/go-tests/handshake.test
[ -x "$bin" ] || die "no $bin"
command -v openssl >/dev/null || die "no openssl in the guest"
modprobe tls 2>/dev/null
[ -r /proc/net/tls_stat ] || die "no kTLS (tls.ko)"
if grep -q TlsTxRekeyOk /proc/net/tls_stat; then result kernel_rekey yes; else result kernel_rekey no; fi
out=/tmp/keyupdate.out
(cd /tmp && TLSHD_KEYUPDATE_VM=1 "$bin" -test.v -test.count=1 -test.timeout 240s -test.run '^TestKeyUpdateVM$') >"$out" 2>&1
rc=$?
grep -v '^KEYUPDATE-RESULT ' "$out" | sed 's/^/  [keyupdate] /'
while read -r _ kv; do result "${kv%%=*}" "${kv#*=}"; done < <(grep '^KEYUPDATE-RESULT ' "$out")
result test_rc "$rc"
result passed "$(grep -c -- '--- PASS' "$out")"
((rc == 0)) || fail "TestKeyUpdateVM failed"
! grep -q -- '--- SKIP' "$out" || fail "TestKeyUpdateVM skipped"
grep -q -- '--- PASS: TestKeyUpdateVM' "$out" || fail "TestKeyUpdateVM did not pass"
finish
