#!/bin/bash
# nvme-basic: loopback NVMe/TCP with a TLS 1.3 PSK (SHA-256), host (nvme-tcp)
# and target (nvmet-tcp) both served by $DAEMON. Per round: connect,
# controller and namespace present, kTLS TX and RX on 2 x queue_count
# sockets, DD_MB write/read-back compare, disconnect, no kTLS socket left.
# Then: the daemon is still alive, the tracepoints add up (every request
# accepted, done and completed with status 0, no errors).
# Settings: BASIC_ROUNDS [2] (round 1 includes the crypto module autoload
# of the first kTLS use in a boot, later rounds are warm).
# RESULT keys: daemon_ready_seconds, r<N>_{connect_rc,connect_seconds,
# queue_count,ktls_tx,ktls_rx,dd,dd_seconds,ktls_cipher,disconnect_seconds},
# trace_*, daemon_alive.
# shellcheck source=../lib.sh
. /harness/lib.sh
: "${BASIC_ROUNDS:=2}"
NQN=nqn.2024-01.io.tlshd-go:basic

ram_disks 1 64 || die "brd"
nvmet_port 1 "$ADDR" "$SVCID" || die "nvmet port"
nvmet_subsys "$NQN" /dev/ram0 || die "nvmet subsystem"
nvmet_link 1 "$NQN" || die "port link"
psk_insert "$NQN" 1 || finish
trace_start
daemon_start main "$DAEMON" "$DAEMON_ARGS" || finish
result daemon_ready_seconds "$(secs "$DAEMON_READY_US")"

queues_total=0
for ((r = 1; r <= BASIC_ROUNDS; r++)); do
	say "round $r: connect"
	nvme_connect "$NQN"
	result "r${r}_connect_rc" "$CONNECT_RC"
	result "r${r}_connect_seconds" "$(secs "$CONNECT_US")"
	((CONNECT_RC == 0)) || { fail "connect rc $CONNECT_RC"; break; }
	verify_connected "$NQN" "r${r}_" || break
	queues_total=$((queues_total + QUEUES))
	result "r${r}_ktls_cipher" "$(ktls_ciphers)"
	t0=${EPOCHREALTIME/./}
	nvme disconnect -n "$NQN" >/dev/null || fail "nvme disconnect"
	result "r${r}_disconnect_seconds" "$(elapsed "$t0")"
	ctrl_of "$NQN" && fail "controller $CTRL still there after disconnect"
	ktls_drained || fail "kTLS sockets left 5 s after disconnect: tx=$TLS_TX rx=$TLS_RX"
done

if daemon_alive main; then result daemon_alive yes; else result daemon_alive no; fail "daemon died"; fi
trace_save /tmp/trace
trace_count /tmp/trace
# accept_err is informative: a daemon that ACCEPTs until EAGAIN (a sweep
# after each READY) traces one handshake_cmd_accept_err per empty queue.
trace_results trace_ submit accept "done" complete_ok complete_err submit_err cancel accept_err
hs=$((2 * queues_total))
for k in submit accept "done" complete_ok; do
	[ "${TRC[$k]}" = "$hs" ] || fail "trace: $k=${TRC[$k]}, expected $hs (2 x $queues_total queues)"
done
for k in complete_err submit_err done_err cancel; do
	[ "${TRC[$k]}" = 0 ] || fail "trace: $k=${TRC[$k]}"
done
daemon_stop main
finish
