#!/bin/bash
# nvme-sha384: like nvme-basic with a SHA-384 PSK only (gen-tls-key --hmac=2:
# identity "NVMe0R02 <hostnqn> <subnqn>", 48-byte key). The 6.12 host
# prefers it (R v0 SHA-384 before R v0 SHA-256); the controller's tls_key
# must be that key and the kTLS cipher AES-256-GCM (TLS_AES_256_GCM_SHA384).
# Debian's tlshd 1.0.0 cannot do it (its GnuTLS build binds every PSK to
# SHA-256), so the expected outcome is a setting:
#   EXPECT_SHA384  pass | fail | any | auto (fail for /usr/sbin/tlshd, else pass)  [auto]
# A mismatch either way fails the scenario.
# RESULT keys: sha384_connect_rc, sha384_connect_seconds, psk_serial,
# tls_key, ktls_cipher, dd, host_status / target_status (on failure),
# sha384_outcome, sha384_expected, trace_*.
# shellcheck source=../lib.sh
. /harness/lib.sh
NQN=nqn.2024-01.io.tlshd-go:sha384
EXPECT=$(expectation "${EXPECT_SHA384:-auto}" "$DAEMON")

ram_disks 1 64 || die "brd"
nvmet_port 1 "$ADDR" "$SVCID" && nvmet_subsys "$NQN" /dev/ram0 && nvmet_link 1 "$NQN" || die "nvmet"
psk_insert "$NQN" 2 || finish
key_serial psk "NVMe0R02 $HOSTNQN $NQN" || die "no NVMe0R02 key in /proc/keys"
psk=$KEY_SERIAL
result psk_serial "$(printf '%08x' "$psk")"
trace_start
daemon_start main "$DAEMON" "$DAEMON_ARGS" || finish

nvme_connect "$NQN"
result sha384_connect_rc "$CONNECT_RC"
result sha384_connect_seconds "$(secs "$CONNECT_US")"
# Checks that make up the outcome do not count as failures themselves: the
# outcome is judged against EXPECT_SHA384 at the end.
f0=$FAILS FAIL_WORD="outcome: not ok"
if ((CONNECT_RC == 0)); then
	if verify_connected "$NQN"; then
		tk=$(ctrl_attr "$CTRL" tls_key)
		result tls_key "$tk"
		[ "$((16#${tk:-0}))" = "$psk" ] || fail "controller tls_key $tk is not the SHA-384 PSK"
		cipher=$(ktls_ciphers)
		result ktls_cipher "$cipher"
		[ "$cipher" = "aes-gcm-256:$((2 * QUEUES))" ] ||
			fail "kTLS ciphers '$cipher', expected aes-gcm-256 on all $((2 * QUEUES)) sockets (TLS_AES_256_GCM_SHA384)"
	fi
	nvme disconnect -n "$NQN" >/dev/null
else
	fail "connect rc $CONNECT_RC"
fi
if ((FAILS > f0)); then outcome=fail; else outcome=pass; fi
FAILS=$f0 FAIL_WORD=FAIL
trace_save /tmp/trace
trace_count /tmp/trace
trace_results trace_ submit accept "done" complete_ok complete_err cancel
result host_status "${TRC[host_status]:-}"
result target_status "${TRC[target_status]:-}"
daemon_alive main || fail "daemon died"
judge sha384 "$EXPECT" "$outcome"
daemon_stop main
finish
