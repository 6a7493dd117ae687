#!/bin/bash
# vm-init: systemd
# systemd-unit: tlshd-go from its own unit file (systemd/tlshd-go.service,
# unchanged: Type=notify, the whole sandbox) under systemd as PID 1.
#  1. install (binary /usr/sbin/tlshd-go, unit in /etc/systemd/system, no
#     drop-in), policy v1 in /etc/tlshd-go/config.toml; systemctl start:
#     returns after READY=1 (the generic netlink listener is already there),
#     ActiveState=active SubState=running, MainPID is tlshd-go, STATUS=
#     arrives (StatusText); the sandbox as /proc/<pid>/status shows it;
#  2. loopback nvme connect --tls (host and target through the unit's
#     daemon): connect, kTLS on 2 x queues, I/O; on the wire (tlswire.pl
#     on lo) every ClientHello offers psk_dhe_ke only and every ServerHello
#     selects the PSK with a key_share (policy v1);
#  3. reload with a new policy (v2: [client] psk_modes = ["psk_ke"]):
#     systemctl reload rc 0, same MainPID, and on the wire the next
#     connect's ClientHellos offer psk_ke only and the ServerHellos carry no
#     key_share;
#  4. reload with a broken policy: systemctl reload rc 0 (ExecReload= is a
#     kill -HUP), unit still active, same MainPID, and the next connect
#     still psk_ke on the wire (v2 kept);
#  5. one more connect with strace attached to the daemon: no system call
#     refused with EPERM or EACCES (the syscall filter's errno is EPERM);
#  6. systemd-analyze security tlshd-go.service (the real, online one):
#     exposure at most UNIT_MAX_EXPOSURE; no audit/seccomp/LSM denial in
#     dmesg; the sandbox as /proc/<pid>/status shows it (bounding set
#     CAP_NET_ADMIN only, no_new_privs, a seccomp filter, own mount
#     namespace); systemctl stop: clean, Result=success, no restart;
#  7. tracepoints: every handshake accepted, done, completed with status 0.
# The journal's lines (start-up, reloads, one per handshake) are printed
# for the reader, never judged: every judgment comes from the kernel, the
# wire or systemd.
# Settings: UNIT_MAX_EXPOSURE [1.9] (systemd-analyze security, online).
# RESULT keys: unit_identical, unit_dropins, start_rc, start_seconds,
# active_state, sub_state, main_pid_comm, listening_at_ready, status_text,
# sandbox_*, c<N>_{connect_rc,connect_seconds,queue_count,ktls_tx,ktls_rx,dd,
# dd_seconds,ktls_cipher,wire_ch_modes,wire_sh}, reload_good_rc,
# reload_bad_rc, main_pid_kept, strace_eperm, security_exposure,
# dmesg_denials, stop_rc, stop_result, n_restarts, trace_*.
# shellcheck source=../lib.sh
. /harness/lib.sh
# shellcheck source=../unit.sh
. /harness/unit.sh
NQN=nqn.2024-01.io.tlshd-go:unit
: "${UNIT_MAX_EXPOSURE:=1.9}"

need_systemd
ram_disks 1 64 || die "brd"
nvmet_port 1 "$ADDR" "$SVCID" && nvmet_subsys "$NQN" /dev/ram0 && nvmet_link 1 "$NQN" || die "nvmet"
psk_insert "$NQN" 1 || finish

unit_install
mkdir -p /etc/tlshd-go
policy() {   # client-psk-modes
	cat >"$UNIT_CONF" <<-EOF
	# systemd-unit scenario: the client's PSK modes change between reloads.
	[global]
	log_level = "info"

	[client]
	psk_modes = [$1]
	EOF
}
policy '"psk_dhe_ke"'
"$UNIT_BIN" check -c "$UNIT_CONF" >/dev/null || fail "tlshd-go check rejects policy v1"
unit_log_console
trace_start
journal_mark
JSTART=$JCUR

# ------------------------------------------------------------ 1. start ---
unit_start
result start_rc "$START_RC"
result start_seconds "$(secs "$START_US")"
((START_RC == 0)) || die "systemctl start $UNIT failed: $(systemctl status --no-pager -l "$UNIT" 2>&1 | tail -n 20)"
# READY=1 must come after the multicast join: right when start returns,
# the daemon's netns has a genl listener of the main process.
genl_listeners "$MAINPID"
result listening_at_ready "$GENL_N"
((GENL_N > 0)) || fail "systemctl start returned (READY=1) but the daemon has no genl listener"
systemctl show -p Type,NotifyAccess,ActiveState,SubState,MainPID,StatusText,Result,NRestarts "$UNIT" | sed 's/^/    show: /'
result active_state "$(prop ActiveState)"
result sub_state "$(prop SubState)"
[ "$(prop ActiveState)/$(prop SubState)" = active/running ] || fail "unit not active/running"
read -r comm 2>/dev/null </proc/"$MAINPID"/comm
result main_pid_comm "${comm:-none}"
[ "$comm" = tlshd-go ] || fail "MainPID $MAINPID is '$comm', not tlshd-go"
if status_wait '[0-9]+ handshakes in flight'; then
	result status_text "\"$STATUS_TEXT\""
else
	result status_text "\"$STATUS_TEXT\""
	fail "no STATUS= from the daemon within ${UNIT_STATUS_WAIT}s"
fi
unit_sandbox_results "$MAINPID" sandbox_
# What the unit asks for (CapabilityBoundingSet=CAP_NET_ADMIN, bit 12;
# NoNewPrivileges=yes; SystemCallFilter=: seccomp mode 2; the Protect*=
# and Private*= settings: a mount namespace of its own).
[ "$SANDBOX_CAPBND" = 0000000000001000 ] || fail "sandbox: CapBnd $SANDBOX_CAPBND, expected CAP_NET_ADMIN only (0000000000001000)"
[ "$SANDBOX_CAPEFF" = 0000000000001000 ] || fail "sandbox: CapEff $SANDBOX_CAPEFF, expected CAP_NET_ADMIN only"
[ "$SANDBOX_NONEWPRIVS" = 1 ] || fail "sandbox: NoNewPrivs $SANDBOX_NONEWPRIVS"
[ "$SANDBOX_SECCOMP" = 2 ] && ((${SANDBOX_SECCOMP_FILTERS//[!0-9]/} + 0 >= 1)) ||
	fail "sandbox: Seccomp $SANDBOX_SECCOMP with $SANDBOX_SECCOMP_FILTERS filters, expected mode 2 (filter)"
[ "$SANDBOX_MOUNT_NS" = own ] || fail "sandbox: the daemon shares the harness's mount namespace"
journal_wait 'msg="tlshd-go started"' 1 5
grep -E 'msg="tlshd-go started"' /tmp/journal.since | sed 's/^/    journal: /'

# ----------------------------------------------------------- connects ---
# One connect and its evidence; the PSK mode the host (client) offers and
# the one the target (server) selects, judged on the wire: a ClientHello's
# psk_key_exchange_modes (0 = psk_ke, 1 = psk_dhe_ke), a ServerHello that
# selects the PSK and has a key_share (psk_dhe_ke) or none (psk_ke).
queues_total=0
mode_code() { case $1 in psk_ke) echo 0 ;; psk_dhe_ke) echo 1 ;; esac; }
connect_check() {   # n client-mode server-mode [--strace]
	local n=$1 cm=$2 sm=$3 spid="" c s ks
	journal_mark
	if [ "${4:-}" = --strace ]; then
		strace -f -Z -qq -p "$MAINPID" -o /tmp/strace.log &
		spid=$!
		nap 1
	fi
	wire_start
	nvme_connect "$NQN"
	result "c${n}_connect_rc" "$CONNECT_RC"
	result "c${n}_connect_seconds" "$(secs "$CONNECT_US")"
	if ((CONNECT_RC != 0)); then
		fail "connect $n: rc $CONNECT_RC"
		wire_stop
		[ -n "$spid" ] && { kill "$spid"; wait "$spid"; }
		return 1
	fi
	verify_connected "$NQN" "c${n}_"
	queues_total=$((queues_total + QUEUES))
	result "c${n}_ktls_cipher" "$(ktls_ciphers)"
	nvme disconnect -n "$NQN" >/dev/null || fail "nvme disconnect"
	[ -n "$spid" ] && { kill -INT "$spid"; wait "$spid"; }
	wire_stop
	c=$(wire_count CH "modes=$(mode_code "$cm")")
	if [ "$sm" = psk_ke ]; then ks=0; else ks=1; fi
	s=$(wire_count SH hrr=0 psk=1 sel=0 "key_share=$ks")
	result "c${n}_wire_ch_modes" "$cm:$c"
	result "c${n}_wire_sh" "$sm:$s"
	[ "$c" = "$QUEUES" ] || fail "connect $n: $c ClientHellos offer only $cm, expected $QUEUES"
	[ "$s" = "$QUEUES" ] || fail "connect $n: $s ServerHellos select the PSK with $sm, expected $QUEUES"
	[ "$(wire_count ALERT)" = 0 ] || fail "connect $n: plaintext alerts on the wire"
	journal_since >/tmp/journal.since
	grep -E 'msg=handshake' /tmp/journal.since | sed 's/^/    journal: /'
}

# ----------------------------------------------- 2. connect (policy v1) ---
say "connect 1: policy v1 (client psk_dhe_ke)"
connect_check 1 psk_dhe_ke psk_dhe_ke
status_wait "[0-9]+ handshakes in flight, $((2 * queues_total)) succeeded, 0 failed" 7 ||
	fail "StatusText '$STATUS_TEXT' does not count the $((2 * queues_total)) handshakes"
result status_text_after "\"$STATUS_TEXT\""

# ------------------------------------------------- 3. reload, good file ---
say "reload: policy v2 (client psk_ke)"
policy '"psk_ke"'
journal_mark
systemctl reload "$UNIT"
rc=$?
result reload_good_rc "$rc"
((rc == 0)) || fail "systemctl reload rc $rc"
journal_wait 'msg="policy reloaded"' 1 5
journalctl -q -u "$UNIT" --after-cursor="$JCUR" -o short-monotonic | sed 's/^/    journal: /'
[ "$(prop MainPID)" = "$MAINPID" ] || fail "MainPID changed on reload"
[ "$(prop ActiveState)" = active ] || fail "unit $(prop ActiveState) after reload"
say "connect 2: policy v2 must be in effect"
connect_check 2 psk_ke psk_ke

# -------------------------------------------------- 4. reload, bad file ---
say "reload: a broken policy (must be rejected, v2 kept)"
cat >"$UNIT_CONF" <<-'EOF'
	[global]
	log_level = "loud"
	[client]
	psk_modes = ["psk_ke"
	EOF
journal_mark
systemctl reload "$UNIT"
rc=$?
result reload_bad_rc "$rc"
# ExecReload= only sends SIGHUP: the reload job succeeds; the daemon keeps
# its policy (connect 3 shows which one on the wire).
((rc == 0)) || fail "systemctl reload (broken policy) rc $rc"
journal_wait 'reload failed' 1 5
journalctl -q -u "$UNIT" --after-cursor="$JCUR" -o short-monotonic | sed 's/^/    journal: /'
systemctl show -p ActiveState,SubState,MainPID "$UNIT" | sed 's/^/    show: /'
if [ "$(prop MainPID)" = "$MAINPID" ] && [ "$(prop ActiveState)/$(prop SubState)" = active/running ]; then
	result main_pid_kept yes
else
	result main_pid_kept no
	fail "the unit did not survive a broken policy"
fi
say "connect 3: policy v2 must still be in effect"
connect_check 3 psk_ke psk_ke

# ---------------------------------------------- 5. strace: failed calls ---
say "connect 4: strace -f -Z on the daemon (failed system calls)"
connect_check 4 psk_ke psk_ke --strace
# The syscall filter answers EPERM (SystemCallErrorNumber=), the sandbox
# EPERM or EACCES: none of them may hit a handshake. (Other failed calls,
# EAGAIN on non-blocking sockets, are normal and only listed.)
touch /tmp/strace.log
awk '{ for (i = 1; i <= NF; i++) if ($i == "=" && $(i + 1) == "-1") { split($2, a, "("); e[a[1] " " $(i + 2)]++ } }
	END { for (k in e) print "    strace: " k " x" e[k] }' /tmp/strace.log | sort
n=$(grep -cE ' = -1 (EPERM|EACCES)' /tmp/strace.log)
result strace_eperm "$n"
((n == 0)) || { grep -E ' = -1 (EPERM|EACCES)' /tmp/strace.log | head -n 20 | sed 's/^/    strace: /'; fail "$n system calls refused (EPERM/EACCES) during a connect"; }
[ -s /tmp/strace.log ] || fail "strace recorded nothing"

# ----------------------------------- 6. security, audit, stop, trace ---
systemd-analyze security --no-pager "$UNIT" >/tmp/security.txt 2>&1
sed 's/^/    security: /' /tmp/security.txt
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' /tmp/security.txt)
result security_exposure "\"${exposure:-?}\""
[ -n "$exposure" ] || fail "systemd-analyze security printed no score"
awk -v e="${exposure%% *}" -v m="$UNIT_MAX_EXPOSURE" 'BEGIN { exit !(e != "" && e + 0 <= m + 0) }' ||
	fail "exposure ${exposure:-?} above UNIT_MAX_EXPOSURE=$UNIT_MAX_EXPOSURE"
# Denials the kernel logs: seccomp (audit type 1326; only for kill/log
# actions: the unit's filter returns EPERM, which strace above shows),
# AppArmor and SELinux. The guest runs no auditd (kernel audit disabled).
n=$(dmesg | grep -ciE 'type=1326|seccomp.*(syscall|sig=)|apparmor="DENIED"|avc: +denied')
result dmesg_denials "$n"
((n == 0)) || { dmesg | grep -iE 'type=1326|seccomp.*(syscall|sig=)|apparmor="DENIED"|avc: +denied' | tail -n 20 | sed 's/^/    dmesg: /'; fail "$n denials in dmesg"; }
result n_restarts "$(prop NRestarts)"
[ "$(prop NRestarts)" = 0 ] || fail "the unit restarted"
journal_mark
systemctl stop "$UNIT"
rc=$?
result stop_rc "$rc"
((rc == 0)) || fail "systemctl stop rc $rc"
result stop_result "$(prop Result)"
[ "$(prop Result)" = success ] || fail "stop: Result=$(prop Result)"
[ "$(prop ActiveState)" = inactive ] || fail "stop: ActiveState=$(prop ActiveState)"
journalctl -q -u "$UNIT" --after-cursor="$JCUR" -o short-monotonic | sed 's/^/    journal: /'
journal_since "$JSTART" | grep -E 'level=(WARN|ERROR)' | head -n 10 | sed 's/^/    journal: /'

trace_save /tmp/trace
trace_count /tmp/trace
trace_results trace_ submit accept "done" complete_ok complete_err submit_err cancel accept_err
hs=$((2 * queues_total))
for k in submit accept "done" complete_ok; do
	[ "${TRC[$k]}" = "$hs" ] || fail "trace: $k=${TRC[$k]}, expected $hs (2 x $queues_total queues)"
done
for k in complete_err submit_err done_err cancel; do
	[ "${TRC[$k]}" = 0 ] || fail "trace: $k=${TRC[$k]}"
done
finish
