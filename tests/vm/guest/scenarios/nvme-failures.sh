#!/bin/bash
# nvme-failures: how the daemon fails, and that failing costs nothing.
#   wrong-psk    the host offers the target's identity from a keyring of its
#                own (keyring=) with a different secret: the connect must
#                fail promptly (well before the 10 s kernel handshake
#                timeout), both ends completed with a non-zero status, no
#                hang, daemon alive.
#   missing-key  the host offers an identity (from its own keyring) that
#                .nvme does not hold: the same checks.
#   restart      a request pending in the kernel survives a daemon restart:
#                the daemon is SIGSTOPped, a connect submits (READY queued on
#                the daemon's socket, nothing accepted), the daemon is
#                SIGKILLed and a fresh one started: its start-up sweep must
#                ACCEPT the pending requests and the connect succeed.
#                Debian's tlshd 1.0.0 has no sweep:
#                EXPECT_RESTART pass|fail|any|auto (fail for /usr/sbin/tlshd)  [auto]
#   fd-leak      >= FD_HANDSHAKES handshakes (connect/disconnect loops): the
#                daemon's fd count (/proc/PID/fd) must be the same before and
#                after; RSS and PSS before/after are reported.
#   Expected DONE statuses (the kernel records the negated errno), checked
#   when set: EXPECT_WRONG_PSK_STATUS, EXPECT_MISSING_KEY_STATUS, e.g.
#   "-13" or "-13/-13" for host/target; "auto" means -13 (EACCES) and
#   -129 (EKEYREJECTED) on both ends for tlshd-go and no check for
#   /usr/sbin/tlshd.                                                  [auto]
# Settings: FAIL_CASES [wrong-psk missing-key restart fd-leak],
#   FAIL_PROMPT_SECONDS [5], FD_HANDSHAKES [200],
#   FD_CONNECT_ARGS [--nr-write-queues=2 --nr-poll-queues=2] (more queues,
#   more handshakes per connect).
# The host's own keyring (wrong-psk, missing-key): see alt_connect.
# shellcheck source=../lib.sh
. /harness/lib.sh
: "${FAIL_CASES:=wrong-psk missing-key restart fd-leak}" "${FAIL_PROMPT_SECONDS:=5}"
: "${FD_HANDSHAKES:=200}" "${FD_CONNECT_ARGS=--nr-write-queues=2 --nr-poll-queues=2}"
P=nqn.2024-01.io.tlshd-go:fail
EXPECT_R=$(expectation "${EXPECT_RESTART:-auto}" "$DAEMON")
# What our daemon must report; the reference's statuses are only recorded.
want_status() {   # EXPECT value, tlshd-go's
	case $1 in
	auto) [ "${DAEMON##*/}" = tlshd ] || echo "$2/$2" ;;
	*/*) echo "$1" ;;
	*) echo "$1/$1" ;;
	esac
}
declare -A WANT_STATUS=(
	[wrong-psk]=$(want_status "${EXPECT_WRONG_PSK_STATUS:-auto}" -13)
	[missing-key]=$(want_status "${EXPECT_MISSING_KEY_STATUS:-auto}" -129)
)

ram_disks 4 16 || die "brd"
nvmet_port 1 "$ADDR" "$SVCID" || die "nvmet port"
i=0
for c in a b c d; do
	nvmet_subsys "$P-$c" "/dev/ram$i" || die "subsystem $P-$c"
	i=$((i + 1))
done
nvmet_link 1 "$P-a" "$P-b" "$P-c" "$P-d" || die "port links"
for c in a c d; do psk_insert "$P-$c" 1 || finish; done   # none for b
daemon_start main "$DAEMON" "$DAEMON_ARGS" || finish

# Connect with a PSK from a keyring of the host's own, passed to the kernel
# as keyring=<serial> (nvme-cli 2.13 drops --keyring: fabrics_connect).
# The keyring lives in a new anonymous session keyring, which the daemons
# (other sessions) never search. Its user permissions must include write:
# at ACCEPT the kernel links it into the daemon's process keyring with
# lookup_user_key(..., KEY_WRITE), else ACCEPT fails with EACCES.
# -> CONNECT_RC (90: keyring setup failed) CONNECT_US
alt_connect() {   # case nqn
	rm -f /tmp/alt.rc
	# shellcheck disable=SC2016   # expanded by the inner bash
	keyctl session - bash -c '
		. /harness/lib.sh
		kr=$(keyctl newring "tlshd-vm-$1" @s) && keyctl setperm "$kr" 0x3f3f0000 &&
			k=$(head -c 32 /dev/urandom | keyctl padd psk "NVMe0R01 $HOSTNQN $2" "$kr") &&
			keyctl setperm "$k" 0x3f3f0000 || exit 90
		say "host keyring $kr holds key $k: NVMe0R01 $HOSTNQN $2"
		fabrics_connect "nqn=$2,keyring=$kr"
		echo "$CONNECT_RC $CONNECT_US" >/tmp/alt.rc' _ "$1" "$2" >/tmp/alt.log 2>&1
	grep -v '^Joined session' /tmp/alt.log
	read -r CONNECT_RC CONNECT_US 2>/dev/null </tmp/alt.rc || CONNECT_RC=90 CONNECT_US=0
}
# A connect that must fail fast with both ends completed non-zero.
must_fail_promptly() {   # case nqn
	local c=$1
	trace_start
	alt_connect "$c" "$2"
	result "${c}_connect_rc" "$CONNECT_RC"
	result "${c}_seconds" "$(secs "$CONNECT_US")"
	((CONNECT_RC != 90)) || { fail "$c: could not set up the host's keyring"; return; }
	((CONNECT_RC != 0)) || fail "$c: connect succeeded"
	((CONNECT_US < FAIL_PROMPT_SECONDS * 1000000)) || fail "$c: took $(secs "$CONNECT_US") s (limit $FAIL_PROMPT_SECONDS)"
	ctrl_of "$2" && { fail "$c: a controller exists"; ctrl_delete "$CTRL"; }
	trace_save "/tmp/trace-$c"
	trace_count "/tmp/trace-$c"
	result "${c}_host_status" "${TRC[host_status]:-none}"
	result "${c}_target_status" "${TRC[target_status]:-none}"
	result "${c}_cancel" "${TRC[cancel]}"
	((TRC[cancel] == 0)) || fail "$c: ${TRC[cancel]} requests cancelled (a kernel timeout, not a prompt failure)"
	[ -n "${TRC[host_status]:-}" ] || fail "$c: no non-zero handshake_complete for the host end"
	[ -n "${TRC[target_status]:-}" ] || fail "$c: no non-zero handshake_complete for the target end"
	local want=${WANT_STATUS[$c]:-}
	if [ -n "$want" ]; then
		result "${c}_status_expected" "$want"
		[ "${TRC[host_status]:-}/${TRC[target_status]:-}" = "$want" ] ||
			fail "$c: statuses host/target ${TRC[host_status]:-none}/${TRC[target_status]:-none}, want $want"
	fi
	((TRC[complete_ok] == 0)) || fail "$c: ${TRC[complete_ok]} handshakes succeeded"
	ktls_drained || fail "$c: kTLS sockets left: $TLS_TX/$TLS_RX"
	daemon_alive main || fail "$c: daemon died"
}

case_restart() {
	local pid=${DPID[main]} i rc t0
	trace_start
	kill -STOP -- "-$pid"
	t0=${EPOCHREALTIME/./}
	( nvme_connect "$P-c" >/dev/null; echo "$CONNECT_RC $CONNECT_US" >/tmp/restart.rc ) &
	local cpid=$!
	# Pending = READY queued, unread, on the stopped daemon's socket.
	for ((i = 0; i < 250; i++)); do
		genl_listeners "$pid"
		((GENL_RMEM > 0)) && break
		nap 0.02
	done
	nap 0.3   # the other end's request (host and target submit together)
	genl_listeners "$pid"
	result restart_ready_queued_bytes "$GENL_RMEM"
	((GENL_RMEM > 0)) || fail "restart: no READY queued on the stopped daemon"
	daemon_stop main KILL
	daemon_start main "$DAEMON" "$DAEMON_ARGS" || return
	result restart_new_daemon_ready_seconds "$(secs "$DAEMON_READY_US")"
	wait "$cpid"
	read -r rc _ </tmp/restart.rc
	result restart_connect_rc "$rc"
	result restart_connect_seconds "$(elapsed "$t0")"
	local f0=$FAILS outcome
	FAIL_WORD="outcome: not ok"
	if ((rc == 0)); then verify_connected "$P-c" "restart_"; nvme disconnect -n "$P-c" >/dev/null
	else fail "restart: connect rc $rc"; fi
	trace_save /tmp/trace-restart
	trace_count /tmp/trace-restart
	trace_results restart_trace_ submit accept complete_ok complete_err cancel
	# Every request (the pending ones included) accepted by the new daemon
	# and completed with status 0; none cancelled by the kernel's timeout.
	((TRC[submit] >= 2 && TRC[accept] == TRC[submit] && TRC[complete_ok] == TRC[submit])) ||
		fail "restart: trace submit=${TRC[submit]} accept=${TRC[accept]} complete_ok=${TRC[complete_ok]}, expected all equal, >= 2"
	((TRC[complete_err] == 0 && TRC[cancel] == 0)) || fail "restart: trace complete_err=${TRC[complete_err]} cancel=${TRC[cancel]}"
	if ((FAILS > f0)); then outcome=fail; else outcome=pass; fi
	FAILS=$f0 FAIL_WORD=FAIL
	judge restart "$EXPECT_R" "$outcome"
	daemon_alive main || fail "restart: new daemon died"
}

case_fd_leak() {
	local pid=${DPID[main]} fd0 fd1 n=0 hs=0 q i ok=1
	trace_start
	# Warm-up (first kTLS use loads crypto modules), and the queue count.
	# shellcheck disable=SC2086
	nvme_connect "$P-d" $FD_CONNECT_ARGS >/dev/null || { fail "fd-leak: warm-up connect rc $CONNECT_RC"; return; }
	ctrl_of "$P-d" && q=$(ctrl_attr "$CTRL" queue_count) && ctrl_delete "$CTRL"
	result fd_queues_per_connect "$q"
	for ((i = 0; i < 250; i++)); do mem_of "$pid"; ((MEM_N == 1)) && break; nap 0.02; done
	fd_count "$pid"; fd0=$FDN
	result fd_before "$fd0"
	result rss_before_kb "$MEM_RSS"
	result pss_before_kb "$MEM_PSS"
	local t0=${EPOCHREALTIME/./}
	while ((hs < FD_HANDSHAKES)); do
		# shellcheck disable=SC2086
		timeout "$CONNECT_TIMEOUT" nvme connect -t tcp -a "$ADDR" -s "$SVCID" -n "$P-d" \
			--hostnqn="$HOSTNQN" --hostid="$HOSTID" --tls $FD_CONNECT_ARGS >/dev/null 2>&1 ||
			{ fail "fd-leak: connect $((n + 1)) failed"; ok=0; break; }
		ctrl_of "$P-d" || { fail "fd-leak: no controller"; ok=0; break; }
		hs=$((hs + 2 * $(ctrl_attr "$CTRL" queue_count)))
		ctrl_delete "$CTRL"
		n=$((n + 1))
	done
	result fd_loop_seconds "$(elapsed "$t0")"
	result fd_connects "$n"
	result fd_handshakes "$hs"
	for ((i = 0; i < 250; i++)); do mem_of "$pid"; ((MEM_N == 1)) && break; nap 0.02; done
	fd_count "$pid"; fd1=$FDN
	result fd_after "$fd1"
	result rss_after_kb "$MEM_RSS"
	result pss_after_kb "$MEM_PSS"
	result fd_procs_after "$MEM_N"
	((fd0 == fd1)) || { fail "fd-leak: $fd0 fds before, $fd1 after"; ls -l "/proc/$pid/fd"; }
	trace_save /tmp/trace-fd
	trace_count /tmp/trace-fd
	trace_results fd_trace_ complete_ok complete_err cancel submit_err
	((ok == 0 || TRC[complete_ok] == hs + 2 * q)) || fail "fd-leak: ${TRC[complete_ok]} handshakes completed ok, expected $((hs + 2 * q))"
	daemon_alive main || fail "fd-leak: daemon died"
}

for c in $FAIL_CASES; do
	say "--- case $c"
	case $c in
	wrong-psk) must_fail_promptly wrong-psk "$P-a" ;;    # .nvme holds another secret
	missing-key) must_fail_promptly missing-key "$P-b" ;; # .nvme holds nothing for b
	restart) case_restart ;;
	fd-leak) case_fd_leak ;;
	*) fail "unknown case $c" ;;
	esac
done
daemon_stop main
finish
