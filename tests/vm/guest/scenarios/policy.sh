#!/bin/bash
# vm-init: systemd
# policy: per-subsystem TLS policy, tlshd-go running from its unit file
# (systemd/tlshd-go.service, unchanged) with /etc/tlshd-go/config.toml.
# Host and target in this VM, both through the one daemon, so the one
# policy file carries the client-role (host) and server-role (target) rules.
# Three subsystems on one port, a RAM disk each. The handshakes are judged
# from the kernel (tracepoints, kTLS, ss, sysfs) and from the wire (the
# plaintext ClientHello, ServerHello and alerts on lo, tlswire.pl); the
# daemon's journal lines are printed, never judged.
#   A  SHA-384 PSK (gen-tls-key --hmac=2: "NVMe0R02 ..."); rule for both
#      roles: cipher_suites = ["TLS_AES_256_GCM_SHA384"].
#      Expect: connect, I/O; every ClientHello offers the NVMe0R02
#      identity and only TLS_AES_256_GCM_SHA384 (1302), every ServerHello
#      selects the PSK and 1302; the controller's tls_key is that key; ss:
#      all kTLS sockets aes-gcm-256.
#   B  SHA-256 PSK; host rule (role client) psk_modes = ["psk_ke"], target
#      rule (role server) psk_modes = ["psk_dhe_ke"]: no common mode.
#      Expect: the connect fails promptly; every ClientHello offers psk_ke
#      only, no ServerHello, the server answers each with a
#      handshake_failure alert (40); non-zero handshake_complete statuses
#      on both sides; no controller, no kTLS.
#   C  SHA-256 PSK; host rule psk_modes = ["psk_ke"], target: [server]
#      psk_modes = ["psk_dhe_ke", "psk_ke"] (psk_ke allowed on both sides).
#      Expect: connect, I/O; every ClientHello offers psk_ke only, every
#      ServerHello selects the PSK without a key_share (no group).
# Settings: POLICY_FAIL_PROMPT_SECONDS [5] (B must fail within).
# RESULT keys: a_/b_/c_{connect_rc,connect_seconds}, a_/c_{queue_count,
# ktls_tx,ktls_rx,dd,dd_seconds,ktls_cipher}, a_tls_key, a_psk_serial,
# a_wire_{ch,sh}_sha384, b_wire_{ch_psk_ke,sh,server_alert_40},
# c_wire_{ch,sh}_psk_ke, b_host_status, b_target_status, b_ctrl_left,
# b_ktls_left, main_pid_kept, n_restarts, <x>_trace_*.
# shellcheck source=../lib.sh
. /harness/lib.sh
# shellcheck source=../unit.sh
. /harness/unit.sh
: "${POLICY_FAIL_PROMPT_SECONDS:=5}"
NQN_A=nqn.2024-01.io.tlshd-go:policy-a
NQN_B=nqn.2024-01.io.tlshd-go:policy-b
NQN_C=nqn.2024-01.io.tlshd-go:policy-c

need_systemd
ram_disks 3 64 || die "brd"
nvmet_port 1 "$ADDR" "$SVCID" || die "nvmet port"
nvmet_subsys "$NQN_A" /dev/ram0 && nvmet_subsys "$NQN_B" /dev/ram1 && nvmet_subsys "$NQN_C" /dev/ram2 || die "nvmet subsystems"
nvmet_link 1 "$NQN_A" "$NQN_B" "$NQN_C" || die "port link"
psk_insert "$NQN_A" 2 && psk_insert "$NQN_B" 1 && psk_insert "$NQN_C" 1 || finish
key_serial psk "NVMe0R02 $HOSTNQN $NQN_A" || die "no NVMe0R02 key for A"
PSK_A=$KEY_SERIAL
result a_psk_serial "$(printf '%08x' "$PSK_A")"
key_serial psk "NVMe0R01 $HOSTNQN $NQN_A" && fail "A has a SHA-256 key too"

unit_install
mkdir -p /etc/tlshd-go
cat >"$UNIT_CONF" <<EOF
# policy scenario (tests/vm/guest/scenarios/policy.sh)
[global]
log_level = "info"

[server]
# psk_ke allowed for the target unless a rule says otherwise (subsystem C).
psk_modes = ["psk_dhe_ke", "psk_ke"]

# A: TLS_AES_256_GCM_SHA384 only, host and target (no role in the match).
[[peer]]
name = "A-sha384"
cipher_suites = ["TLS_AES_256_GCM_SHA384"]
[peer.match]
subsys_nqn = "$NQN_A"

# B: the host offers psk_ke only ...
[[peer]]
name = "B-host-offers-psk_ke-only"
psk_modes = ["psk_ke"]
[peer.match]
role = "client"
subsys_nqn = "$NQN_B"

# ... and the target refuses psk_ke.
[[peer]]
name = "B-target-refuses-psk_ke"
psk_modes = ["psk_dhe_ke"]
[peer.match]
role = "server"
subsys_nqn = "$NQN_B"

# C (control): the host offers psk_ke only; the target's [server] allows it.
[[peer]]
name = "C-host-psk_ke"
psk_modes = ["psk_ke"]
[peer.match]
role = "client"
subsys_nqn = "$NQN_C"
EOF
sed 's/^/    config.toml: /' "$UNIT_CONF"
"$UNIT_BIN" check -c "$UNIT_CONF" >/tmp/check.out 2>&1 || { cat /tmp/check.out; die "tlshd-go check rejects the policy"; }
unit_log_console
trace_start
unit_start
((START_RC == 0)) || die "systemctl start $UNIT failed: $(systemctl status --no-pager -l "$UNIT" 2>&1 | tail -n 20)"
say "$UNIT: MainPID $MAINPID, started in $(secs "$START_US") s"
systemctl show -p ActiveState,SubState,MainPID "$UNIT" | sed 's/^/    show: /'

# The daemon's handshake lines of one connect (since the mark), for the
# reader.
hs_show() {
	journal_since >/tmp/journal.since
	grep -E 'msg=handshake' /tmp/journal.since | sed 's/^/    journal: /'
}

# ------------------------------------------------- A: SHA-384 suite ---
say "A: SHA-384 PSK, policy cipher_suites = [TLS_AES_256_GCM_SHA384]"
journal_mark
trace_clear
wire_start
nvme_connect "$NQN_A"
result a_connect_rc "$CONNECT_RC"
result a_connect_seconds "$(secs "$CONNECT_US")"
if ((CONNECT_RC == 0)); then
	verify_connected "$NQN_A" a_
	tk=$(ctrl_attr "$CTRL" tls_key)
	result a_tls_key "$tk"
	[ "$((16#${tk:-0}))" = "$PSK_A" ] || fail "A: controller tls_key $tk is not the SHA-384 PSK"
	cipher=$(ktls_ciphers)
	result a_ktls_cipher "$cipher"
	[ "$cipher" = "aes-gcm-256:$((2 * QUEUES))" ] ||
		fail "A: kTLS ciphers '$cipher', expected aes-gcm-256 on all $((2 * QUEUES)) sockets"
	ss -Htni | grep -o 'tcp-ulp-tls version: [^ ]* cipher: [^ ]*' | sort | uniq -c | sed 's/^/    ss: /'
	nvme disconnect -n "$NQN_A" >/dev/null || fail "A: nvme disconnect"
	wire_stop
	n=$(wire_count CH suites=1302 "psk_id=\"NVMe0R02" psk_ids=1)
	result a_wire_ch_sha384 "$n"
	((n == QUEUES)) || fail "A: $n ClientHellos offer only TLS_AES_256_GCM_SHA384 with the NVMe0R02 identity, expected $QUEUES"
	n=$(wire_count SH hrr=0 suite=1302 psk=1 sel=0)
	result a_wire_sh_sha384 "$n"
	((n == QUEUES)) || fail "A: $n ServerHellos select the PSK with TLS_AES_256_GCM_SHA384, expected $QUEUES"
	hs_show
	a_hs=$((2 * QUEUES))
else
	fail "A: connect rc $CONNECT_RC"
	wire_stop
	hs_show
	a_hs=0
fi
trace_save /tmp/trace.a
trace_count /tmp/trace.a
trace_results a_trace_ submit accept "done" complete_ok complete_err cancel
[ "${TRC[complete_ok]}" = "$a_hs" ] && [ "${TRC[complete_err]}" = 0 ] || fail "A: trace complete_ok=${TRC[complete_ok]} complete_err=${TRC[complete_err]}, expected $a_hs/0"

# ------------------------------------------ B: psk_ke offered, refused ---
say "B: host offers psk_ke only, target refuses psk_ke: the connect must fail"
journal_mark
trace_clear
wire_start
nvme_connect "$NQN_B"
result b_connect_rc "$CONNECT_RC"
result b_connect_seconds "$(secs "$CONNECT_US")"
((CONNECT_RC != 0)) || fail "B: connect succeeded"
((CONNECT_US < POLICY_FAIL_PROMPT_SECONDS * 1000000)) || fail "B: took $(secs "$CONNECT_US") s to fail (> ${POLICY_FAIL_PROMPT_SECONDS} s)"
if ctrl_of "$NQN_B"; then result b_ctrl_left "$CTRL"; fail "B: controller $CTRL exists"; ctrl_delete "$CTRL"; else result b_ctrl_left none; fi
tls_stat
result b_ktls_left "$TLS_TX/$TLS_RX"
((TLS_TX == 0 && TLS_RX == 0)) || fail "B: kTLS sockets tx=$TLS_TX rx=$TLS_RX after a failed connect"
wire_stop
hs_show
# The refusal on the wire: the host offered psk_ke only, the target sent
# no ServerHello and refused each ClientHello with handshake_failure.
n=$(wire_count CH modes=0)
result b_wire_ch_psk_ke "$n"
result b_wire_sh "$(wire_count SH)"
a=$(wire_count ALERT from=server desc=40)
result b_wire_server_alert_40 "$a"
((n >= 1)) && [ "$(wire_count CH)" = "$n" ] || fail "B: ClientHellos $(wire_count CH), $n of them offering psk_ke only; expected all, at least one"
[ "$(wire_count SH)" = 0 ] || fail "B: $(wire_count SH) ServerHellos"
((a == n)) || fail "B: $a handshake_failure alerts from the target for $n ClientHellos"
trace_save /tmp/trace.b
trace_count /tmp/trace.b
trace_results b_trace_ submit accept "done" complete_ok complete_err cancel
result b_host_status "${TRC[host_status]:-}"
result b_target_status "${TRC[target_status]:-}"
[ "${TRC[complete_ok]}" = 0 ] || fail "B: trace complete_ok=${TRC[complete_ok]}"
[ -n "${TRC[host_status]:-}" ] || fail "B: no non-zero handshake_complete for the host request"
[ -n "${TRC[target_status]:-}" ] || fail "B: no non-zero handshake_complete for the target request"
kernel_log 6

# --------------------------------------------- C: psk_ke on both sides ---
say "C: host offers psk_ke only, target allows psk_ke: psk_ke, no group"
journal_mark
trace_clear
wire_start
nvme_connect "$NQN_C"
result c_connect_rc "$CONNECT_RC"
result c_connect_seconds "$(secs "$CONNECT_US")"
if ((CONNECT_RC == 0)); then
	verify_connected "$NQN_C" c_
	cipher=$(ktls_ciphers)
	result c_ktls_cipher "$cipher"
	[ "$cipher" = "aes-gcm-128:$((2 * QUEUES))" ] || fail "C: kTLS ciphers '$cipher', expected aes-gcm-128 on all $((2 * QUEUES))"
	nvme disconnect -n "$NQN_C" >/dev/null || fail "C: nvme disconnect"
	wire_stop
	n=$(wire_count CH modes=0)
	result c_wire_ch_psk_ke "$n"
	((n == QUEUES)) || fail "C: $n ClientHellos offer psk_ke only, expected $QUEUES"
	n=$(wire_count SH hrr=0 psk=1 sel=0 key_share=0)
	result c_wire_sh_psk_ke "$n"
	((n == QUEUES)) || fail "C: $n ServerHellos select the PSK without a key_share, expected $QUEUES"
	hs_show
	c_hs=$((2 * QUEUES))
else
	fail "C: connect rc $CONNECT_RC"
	wire_stop
	hs_show
	c_hs=0
fi
trace_save /tmp/trace.c
trace_count /tmp/trace.c
trace_results c_trace_ submit accept "done" complete_ok complete_err cancel
[ "${TRC[complete_ok]}" = "$c_hs" ] && [ "${TRC[complete_err]}" = 0 ] || fail "C: trace complete_ok=${TRC[complete_ok]} complete_err=${TRC[complete_err]}, expected $c_hs/0"

# --------------------------------------------------------------- unit ---
systemctl show -p ActiveState,SubState,MainPID,NRestarts,StatusText "$UNIT" | sed 's/^/    show: /'
if [ "$(prop MainPID)" = "$MAINPID" ] && [ "$(prop ActiveState)" = active ]; then result main_pid_kept yes; else result main_pid_kept no; fail "the unit restarted or died"; fi
result n_restarts "$(prop NRestarts)"
[ "$(prop NRestarts)" = 0 ] || fail "the unit restarted"
systemctl stop "$UNIT" || fail "systemctl stop"
[ "$(prop Result)" = success ] || fail "stop: Result=$(prop Result)"
finish
