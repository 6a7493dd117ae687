#!/bin/bash
# vm-init: systemd
# faults: no peer can starve the daemon and no fault strands a request
# (issue 8). tlshd-go runs from its unit (systemd/tlshd-go.service,
# unchanged; Restart=on-failure) with a policy of psk_ke for the host
# (client) and both modes for the target (server). FAULTS_K subsystems on
# one TLS port (null_blk), FAULTS_K controllers connected through the
# unit's daemon, then one case after the other, each around a reset storm
# (every controller reset at once; --reconnect-delay=1):
#   silent  FAULTS_SILENT TCP connections to the TLS port that connect and
#           send nothing (bash /dev/tcp; one closed by the target is opened
#           again, at most FAULTS_SILENT_RATE opens a second); nvmet-tcp
#           submits a handshake request for each. During the storm: every
#           controller live again within FAULTS_TIMEOUT, none failed.
#   kill    kill -9 of the daemon in the middle of a storm: systemd restarts
#           it (NRestarts + 1), and every controller is live again within
#           FAULTS_RESTART_LIVE seconds of the new daemon's start.
#   hup     a broken policy file and SIGHUP (systemctl reload) in the middle
#           of a storm: same MainPID, every controller live again, and on the
#           wire (tlswire.pl) every handshake still uses the old policy
#           (ClientHello offers psk_ke only, ServerHello without key_share).
#   emfile  RLIMIT_NOFILE of the running daemon lowered (prlimit) to its
#           open fds + FAULTS_FD_SPARE, then a storm: ACCEPT fails with
#           EMFILE (tracepoint handshake_cmd_accept_err err=-24; the case
#           fails if it is never provoked); every request still completes
#           and every controller is live again. The limit is restored.
#   revoke  the host's PSK of the first controller (in a keyring of the
#           scenario's, passed as keyring=) revoked (keyctl revoke) in the
#           middle of a storm: that controller fails with ENOKEY,
#           EKEYREVOKED or EKEYREJECTED (the host's "no valid PSK found" /
#           "-126|-128|-129" in dmesg, or a handshake_complete status
#           -126/-128/-129), the others are live again.
# Lost requests (tracepoints, per case): a submitted request that the
# consumer had to cancel (no DONE in time: handshake_cancel) or that never
# completed (no handshake_complete by the end of the case; not counted in
# revoke, whose controller keeps retrying); requests taken by the daemon
# that kill -9 ended are reported as kill_inflight, and cancelled requests
# submitted before the restarted daemon's first ACCEPT (they waited out
# the restart) as kill_down; neither is counted. emfile runs last: on 6.12.117 it has crashed the guest
# kernel (nvmet_tcp_tls_handshake_timeout -> handshake_req_cancel, NULL
# sk) after an ACCEPT failed with EMFILE.
# RESULT faults.lost = lost requests of all cases + controllers not live
# at the end of a case (the revoked one excepted); the goal is 0.
# RESULT faults.<case>=pass|fail per case (init adds faults.status=pass
# only if the scenario passed: every case, nothing lost), plus per case: <case>_{live_seconds,left,lost,submit,complete_ok,
# complete_err,cancel,eagain,statuses}, silent_{opened,target_reqs},
# kill_{inflight,down,restart_seconds,n_restarts} (kill_live_seconds: from the restart),
# hup_{main_pid_kept,wire_ch_psk_ke,wire_sh_psk_ke,wire_other},
# emfile_{nofile,accept_emfile,accept_errs}, revoke_{ctrl,evidence,others_left}.
# Settings: FAULTS_CASES [silent kill hup revoke emfile], FAULTS_K [8],
#   FAULTS_SILENT [200], FAULTS_SILENT_RATE [100], FAULTS_TIMEOUT [40] (s for
#   the controllers to be live again), FAULTS_RESTART_LIVE [30],
#   FAULTS_DRAIN [12] (s after the silent peers stop, for what they left),
#   FAULTS_FD_SPARE [6] (2 would let a daemon hold host ends whose target
#   ends it cannot accept: no progress possible), FAULTS_LOG_CONSOLE [0].
# shellcheck source=../lib.sh
. /harness/lib.sh
# shellcheck source=../unit.sh
. /harness/unit.sh
: "${FAULTS_CASES:=silent kill hup revoke emfile}" "${FAULTS_K:=8}" "${FAULTS_SILENT:=200}"
: "${FAULTS_SILENT_RATE:=100}" "${FAULTS_TIMEOUT:=40}" "${FAULTS_RESTART_LIVE:=30}" "${FAULTS_DRAIN:=12}"
: "${FAULTS_FD_SPARE:=6}" "${FAULTS_LOG_CONSOLE:=0}"
DAEMON_LOG_CONSOLE=$FAULTS_LOG_CONSOLE
K=$FAULTS_K
NQNS=()
for ((i = 1; i <= K; i++)); do printf -v n 'nqn.2024-01.io.tlshd-go:faults-%0*d' "${#K}" "$i"; NQNS+=("$n"); done
read -r _ memkb _ </proc/meminfo
cap=$((memkb / 4 / 102400)); ((cap < 3)) && cap=3; ((cap > 50)) && cap=50
result k "$K"
result pending_cap_estimate "$cap"

need_systemd
null_disks "$K" || die "null_blk"
nvmet_port 1 "$ADDR" "$SVCID" || die "nvmet port"
for ((i = 0; i < K; i++)); do nvmet_subsys "${NQNS[i]}" "/dev/nullb$i" || die "subsystem ${NQNS[i]}"; done
nvmet_link 1 "${NQNS[@]}" || die "port links"
# The first subsystem's PSK, for revoke: a secret of our own in .nvme for
# the target, and the same secret for the host in a keyring of this
# script's (keyring=, as nvme-failures does): .nvme's keys grant root no
# write or setattr (keyctl revoke: EACCES), this one does (perm 0x3f3f0000).
head -c 32 /dev/urandom >/tmp/psk0
key_serial keyring .nvme || die "no .nvme keyring"
keyctl padd psk "NVMe0R01 $HOSTNQN ${NQNS[0]}" "$KEY_SERIAL" </tmp/psk0 >/dev/null || die "PSK for ${NQNS[0]} in .nvme"
for n in "${NQNS[@]:1}"; do psk_insert "$n" 1 || finish; done

unit_install
mkdir -p /etc/tlshd-go
policy_good() {
	cat >"$UNIT_CONF" <<-EOF
	# faults scenario: psk_ke from the host, so the wire shows which policy ran.
	[global]
	log_level = "warn"

	[client]
	psk_modes = ["psk_ke"]

	[server]
	psk_modes = ["psk_dhe_ke", "psk_ke"]
	EOF
}
policy_good
"$UNIT_BIN" check -c "$UNIT_CONF" >/tmp/check.out 2>&1 || { cat /tmp/check.out; die "tlshd-go check rejects the policy"; }
unit_log_console
trace_tgid 1
trace_start
unit_start
((START_RC == 0)) || die "systemctl start $UNIT failed: $(systemctl status --no-pager -l "$UNIT" 2>&1 | tail -n 20)"
say "$UNIT: MainPID $MAINPID, started in $(secs "$START_US") s"

CARGS=(-t tcp -a "$ADDR" -s "$SVCID" --hostnqn="$HOSTNQN" --hostid="$HOSTID" --tls --reconnect-delay=1)
CTRLS=()
# The host keyring lives in a session keyring of its own (possessed, so
# setperm works); the controller keeps a reference to it afterwards.
# shellcheck disable=SC2016   # expanded by the inner bash
keyctl session - bash -c '
	. /harness/lib.sh
	kr=$(keyctl newring tlshd-vm-faults @s) && keyctl setperm "$kr" 0x3f3f0000 &&
		k=$(keyctl padd psk "NVMe0R01 $HOSTNQN $1" "$kr" </tmp/psk0) && keyctl setperm "$k" 0x3f3f0000 || exit 90
	fabrics_connect "nqn=$1,keyring=$kr,reconnect_delay=1" || exit 91
	echo "$kr $k" >/tmp/hostkey0' _ "${NQNS[0]}" 2>&1 | grep -v '^Joined session'
rm -f /tmp/psk0
read -r HOST_KR HOST_KEY0 2>/dev/null </tmp/hostkey0 || die "host keyring or connect for ${NQNS[0]} failed"
say "host keyring $HOST_KR, key $HOST_KEY0 for ${NQNS[0]}"
ctrl_of "${NQNS[0]}" || die "no controller for ${NQNS[0]}"
CTRLS+=("$CTRL")
for n in "${NQNS[@]:1}"; do
	timeout "$CONNECT_TIMEOUT" nvme connect -n "$n" "${CARGS[@]}" >/tmp/connect.log 2>&1 || { cat /tmp/connect.log; die "connect $n"; }
	ctrl_of "$n" || die "no controller for $n"
	CTRLS+=("$CTRL")
done
wait_live 10 "${CTRLS[@]}" || die "$LEFT controllers not live after connecting"
say "controllers: ${CTRLS[*]}"

# ------------------------------------------------------------- helpers ---
LOST=0
declare -A CASE=()
# Reset the given controllers at once; the writers block until their reset
# is over, so they run in the background (reaped by storm_reap).
STORM_JOBS=()
storm_fire() {   # ctrl...
	local c
	for c; do
		{ echo 1 >"/sys/class/nvme/$c/reset_controller"; } 2>/dev/null &
		STORM_JOBS+=($!)
	done
}
storm_reap() {   # a writer still blocked in its reset is left to cleanup
	local p
	for p in "${STORM_JOBS[@]}"; do proc_live "$p" || wait "$p" 2>/dev/null; done
	STORM_JOBS=()
}
# The requests of a saved trace (per request address, in order):
# -> FT[submit complete complete_ok complete_err cancel eagain accept
#    accept_err emfile open lost inflight statuses host_statuses accept_errs]
# lost: cancelled before any DONE (the consumer gave up) or, with
# count_open=1, never completed; requests accepted by the thread group
# EXCLUDE (a daemon killed on purpose) are "inflight" instead.
declare -A FT=()
faults_trace() {   # file [exclude-tgid] [count_open 1|0]
	local k v
	FT=()
	while IFS='=' read -r k v; do FT[$k]=$v; done < <(awk -v ex="${2:-}" -v cnt="${3:-1}" '
	{
		ev = ""
		for (i = 2; i <= NF; i++) if ($i ~ /^[a-z_]+:$/) { ev = substr($i, 1, length($i) - 1); break }
		if (ev !~ /^handshake_/) next
		delete a
		for (j = i + 1; j <= NF; j++) { eq = index($j, "="); if (eq) a[substr($j, 1, eq - 1)] = substr($j, eq + 1) }
		pid = $1; sub(/.*-/, "", pid); comm = $1; sub(/-[0-9]+$/, "", comm)
		tgid = pid
		if (match($0, /\( *[0-9]+\)/)) { tgid = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", tgid) }
		r = a["req"]
		ts = $(i - 1); sub(/:$/, "", ts); ts += 0
		if (ev == "handshake_submit") { c["submit"]++; open_[r] = 1; side[r] = (comm ~ /^kworker\//) ? "target" : "host"; sts[r] = ts }
		else if (ev == "handshake_submit_err") { c["submit_err"]++; if (a["err"] == -11) c["eagain"]++ }
		else if (ev == "handshake_cmd_accept") {
			c["accept"]++; by[r] = tgid; open_[r] = 1
			if (ex != "" && tgid != ex && first_new == "") first_new = ts
		}
		else if (ev == "handshake_cmd_accept_err") { c["accept_err"]++; ae[a["err"]]++; if (a["err"] == -24) c["emfile"]++ }
		else if (ev == "handshake_cmd_done") c["done"]++
		else if (ev == "handshake_cmd_done_err") c["done_err"]++
		else if (ev == "handshake_complete") {
			c["complete"]++; st = a["status"]
			if (st == 0) c["complete_ok"]++
			else { c["complete_err"]++; stat[st]++; if (side[r] == "host") hst[st]++ }
			delete open_[r]; delete by[r]; delete side[r]
		}
		else if (ev == "handshake_cancel") {
			c["cancel"]++
			if (ex != "" && by[r] == ex) c["inflight"]++
			else if (ex != "") down[r] = (r in sts) ? sts[r] : ts   # judged at the end: submitted before the new daemon?
			else c["lost"]++
			delete open_[r]; delete by[r]; delete side[r]; delete sts[r]
		}
	}
	END {
		# Submitted while no daemon ran (before the new daemon first
		# accepted) and cancelled: it waited out the restart.
		for (r in down) { if (first_new == "" || down[r] < first_new) c["down"]++; else c["lost"]++ }
		for (r in open_) { if (ex != "" && by[r] == ex) c["inflight"]++; else c["open"]++ }
		if (cnt) c["lost"] += c["open"]
		split("submit submit_err eagain accept accept_err emfile done done_err complete complete_ok complete_err cancel open lost inflight down", keys, " ")
		for (i in keys) print keys[i] "=" c[keys[i]] + 0
		o = ""; for (k in stat) o = o (o == "" ? "" : ",") k "x" stat[k]; print "statuses=" o
		o = ""; for (k in hst) o = o (o == "" ? "" : ",") k "x" hst[k]; print "host_statuses=" o
		o = ""; for (k in ae) o = o (o == "" ? "" : ",") k "x" ae[k]; print "accept_errs=" o
	}' "$1")
}
# Report a case's trace figures; add its lost requests to LOST.
case_trace() {   # case file [exclude-tgid] [count_open]
	local k
	trace_save "$2"
	faults_trace "$2" "${3:-}" "${4:-1}"
	for k in submit complete_ok complete_err cancel eagain open lost statuses; do result "$1_$k" "${FT[$k]}"; done
	((FT[lost] == 0)) || fail "$1: ${FT[lost]} requests got no DONE (cancelled by their consumer or never completed)"
	LOST=$((LOST + FT[lost]))
}
# Wait for the controllers; report; add the ones left to LOST. -> LEFT
case_live() {   # case t0 seconds ctrl...
	local name=$1 t0=$2 s=$3
	shift 3
	wait_live "$s" "$@"
	result "${name}_live_seconds" "$(elapsed "$t0")"
	result "${name}_left" "$LEFT"
	if ((LEFT)); then
		local c
		for c; do [ "$(ctrl_attr "$c" state)" = live ] || say "$name: $c $(ctrl_attr "$c" state)"; done
		fail "$name: $LEFT controllers not live within ${s}s"
		LOST=$((LOST + LEFT))
	fi
}
# Start of a case: clean trace and dmesg, the fail count to compare.
case_begin() { say "----- case $1"; F0=$FAILS; trace_clear; dmesg -C; }
case_end() {   # case
	storm_reap
	if ((FAILS > F0)); then CASE[$1]=fail; else CASE[$1]=pass; fi
	result "$1" "${CASE[$1]}"
	# The next case starts from live controllers (not judged here).
	wait_live "$FAULTS_TIMEOUT" "${CTRLS[@]}" || say "$1: $LEFT controllers still not live before the next case"
}
daemon_ok() {   # case: the unit is active and MainPID the given one
	[ "$(prop ActiveState)" = active ] || fail "$1: unit $(prop ActiveState)"
}

# Silent peers: FAULTS_SILENT connections that never send a byte, kept
# open; one the target closed (EOF: readable at once) is opened again, at
# most FAULTS_SILENT_RATE opens a second. All builtins (bash /dev/tcp).
# silent_stop ends the re-opening but keeps the open ones until
# silent_close: closing a connection whose handshake is still running
# would make nvmet cancel it, which is no fault of the daemon.
silent_start() {
	rm -f /tmp/silent.stop /tmp/silent.close /tmp/silent.count /tmp/silent.peak
	(
		local -a fds=()
		local i fd opened=0 open=0 peak=0 budget tick=0 per=$(((FAULTS_SILENT_RATE + 9) / 10))
		while [ ! -e /tmp/silent.stop ]; do
			# Closed ones (EOF) once a second: 200 selects a tick cost too
			# much under TCG.
			if ((tick++ % 10 == 0)); then
				for ((i = 0; i < FAULTS_SILENT; i++)); do
					fd=${fds[i]:-}
					if [ -n "$fd" ] && read -r -t 0 -u "$fd" 2>/dev/null; then
						exec {fd}<&-
						fds[i]="" open=$((open - 1))
					fi
				done
			fi
			budget=$per
			for ((i = 0; i < FAULTS_SILENT && budget > 0; i++)); do
				[ -z "${fds[i]:-}" ] || continue
				budget=$((budget - 1))
				if exec {fd}<>"/dev/tcp/$ADDR/$SVCID"; then
					fds[i]=$fd opened=$((opened + 1)) open=$((open + 1))
				fi 2>/dev/null
			done
			if ((open > peak)); then peak=$open; echo "$peak" >/tmp/silent.peak; fi
			nap 0.1
		done
		echo "$opened $peak" >/tmp/silent.count
		while [ ! -e /tmp/silent.close ]; do nap 0.1; done
	) &
	SILENT_PID=$!
}
# Wait until the silent peers have had FAULTS_SILENT connections open at
# once (or give up after s seconds). -> SILENT_PEAK
silent_wait_peak() {   # seconds
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		SILENT_PEAK=0
		read -r SILENT_PEAK 2>/dev/null </tmp/silent.peak
		((SILENT_PEAK >= FAULTS_SILENT)) && return 0
		nap 0.1
	done
	return 1
}
silent_stop() {   # -> SILENT_OPENED SILENT_PEAK
	local i
	: >/tmp/silent.stop
	for ((i = 0; i < 100; i++)); do [ -e /tmp/silent.count ] && break; nap 0.1; done
	read -r SILENT_OPENED SILENT_PEAK 2>/dev/null </tmp/silent.count || SILENT_OPENED=0 SILENT_PEAK=0
}
silent_close() { : >/tmp/silent.close; wait "$SILENT_PID"; }

# -------------------------------------------------------------- cases ---
case_silent() {
	local t0 n
	case_begin silent
	silent_start
	# The storm starts once FAULTS_SILENT silent connections are open.
	silent_wait_peak 60 || fail "silent: only $SILENT_PEAK silent connections open at once after 60 s"
	t0=${EPOCHREALTIME/./}
	storm_fire "${CTRLS[@]}"
	case_live silent "$t0" "$FAULTS_TIMEOUT" "${CTRLS[@]}"
	silent_stop
	result silent_opened "$SILENT_OPENED"
	result silent_peak_open "$SILENT_PEAK"
	# Every silent request ends within the consumer's timeout (10 s): DONE
	# from the daemon, or nvmet cancels it (lost). Then the peers go.
	nap "$FAULTS_DRAIN"
	silent_close
	nap 1
	case_trace silent /tmp/trace.silent
	# The silent peers must have made nvmet ask: requests submitted by
	# kernel workers (nvmet; host resets too) plus those the kernel refused.
	n=$(awk '/handshake_submit: / && /kworker\// { n++ } END { print n + 0 }' /tmp/trace.silent)
	result silent_target_reqs "$n"
	((n + FT[eagain] >= FAULTS_SILENT)) || fail "silent: only $n requests from kernel workers and ${FT[eagain]} refused: the silent peers were not served"
	daemon_ok silent
	case_end silent
}

case_kill() {
	local t0 old new i tr restarts0
	case_begin kill
	old=$(prop MainPID)
	restarts0=$(prop NRestarts)
	storm_fire "${CTRLS[@]}"
	nap 0.5
	kill -KILL "$old"
	t0=${EPOCHREALTIME/./}
	# systemd restarts it (Restart=on-failure, RestartSec=1s, Type=notify).
	for ((i = 0; i < 300; i++)); do
		new=$(prop MainPID)
		[ "$new" != 0 ] && [ "$new" != "$old" ] && [ "$(prop ActiveState)" = active ] && break
		nap 0.1
	done
	result kill_restart_seconds "$(elapsed "$t0")"
	i=$(($(prop NRestarts) - restarts0))
	result kill_n_restarts "$i"
	((i == 1)) || fail "kill: systemd restarted the unit $i times, expected once"
	if [ "$new" = 0 ] || [ "$new" = "$old" ]; then
		fail "kill: systemd did not restart the daemon"
		LOST=$((LOST + K))
	else
		MAINPID=$new
		tr=${EPOCHREALTIME/./}
		case_live kill "$tr" "$FAULTS_RESTART_LIVE" "${CTRLS[@]}"   # from the restart
	fi
	case_trace kill /tmp/trace.kill "$old"
	result kill_inflight "${FT[inflight]}"
	result kill_down "${FT[down]}"
	((FT[inflight] > 0 || FT[submit] > 0)) || fail "kill: no request in the storm"
	daemon_ok kill
	case_end kill
}

case_hup() {
	local t0 pid other
	case_begin hup
	pid=$(prop MainPID)
	wire_start
	storm_fire "${CTRLS[@]}"
	nap 0.3
	cat >"$UNIT_CONF" <<-'EOF'
	[global]
	log_level = "loud"
	[client]
	psk_modes = ["psk_dhe_ke"
	EOF
	systemctl reload "$UNIT" || fail "hup: systemctl reload rc $?"
	t0=${EPOCHREALTIME/./}
	case_live hup "$t0" "$FAULTS_TIMEOUT" "${CTRLS[@]}"
	wire_stop
	[ "$(prop MainPID)" = "$pid" ] && result hup_main_pid_kept yes || { result hup_main_pid_kept no; fail "hup: MainPID changed"; }
	# Every handshake of the storm under the old policy: psk_ke offered and
	# selected; a reset to defaults would offer psk_dhe_ke.
	result hup_wire_ch_psk_ke "$(wire_count CH modes=0)"
	result hup_wire_sh_psk_ke "$(wire_count SH psk=1 key_share=0)"
	other=$(($(wire_count CH) - $(wire_count CH modes=0) + $(wire_count SH) - $(wire_count SH psk=1 key_share=0)))
	result hup_wire_other "$other"
	(($(wire_count SH psk=1 key_share=0) >= K)) || fail "hup: only $(wire_count SH psk=1 key_share=0) psk_ke ServerHellos for $K controllers"
	((other == 0)) || fail "hup: $other hellos not under the old policy (psk_ke)"
	case_trace hup /tmp/trace.hup
	policy_good
	daemon_ok hup
	case_end hup
}

case_emfile() {
	local t0 pid
	case_begin emfile
	pid=$(prop MainPID)
	fd_count "$pid"
	result emfile_nofile $((FDN + FAULTS_FD_SPARE))
	prlimit --pid "$pid" --nofile=$((FDN + FAULTS_FD_SPARE)):$((FDN + FAULTS_FD_SPARE)) || fail "emfile: prlimit"
	t0=${EPOCHREALTIME/./}
	storm_fire "${CTRLS[@]}"
	case_live emfile "$t0" "$FAULTS_TIMEOUT" "${CTRLS[@]}"
	prlimit --pid "$pid" --nofile=16384:16384 || fail "emfile: prlimit (restore)"
	# Past the first-flight deadline (3 s): a handshake still running now
	# has had time to end before its trace is judged.
	nap 5
	case_trace emfile /tmp/trace.emfile
	result emfile_accept_emfile "${FT[emfile]}"
	result emfile_accept_errs "${FT[accept_errs]}"
	((FT[emfile] > 0)) || fail "emfile: no ACCEPT failed with EMFILE (the case tested nothing)"
	[ "$(prop MainPID)" = "$pid" ] || fail "emfile: the daemon restarted"
	daemon_ok emfile
	case_end emfile
}

case_revoke() {
	local t0 c=${CTRLS[0]} others=("${CTRLS[@]:1}") ev="" d
	case_begin revoke
	result revoke_ctrl "$c"
	storm_fire "${CTRLS[@]}"
	nap 0.3
	keyctl revoke "$HOST_KEY0" || fail "revoke: keyctl revoke $HOST_KEY0"
	t0=${EPOCHREALTIME/./}
	wait_live "$FAULTS_TIMEOUT" "${others[@]}"
	result revoke_live_seconds "$(elapsed "$t0")"
	result revoke_others_left "$LEFT"
	((LEFT == 0)) || { fail "revoke: $LEFT other controllers not live"; LOST=$((LOST + LEFT)); }
	# The revoked one: never live again, refused for its key. Its reset may
	# have been past the key lookup when the key went: reset it once more.
	storm_fire "$c"
	nap 3
	d=$(dmesg | grep -E " $c: .*(no valid PSK|-126|-128|-129)" | tail -n 1)
	[ -n "$d" ] && ev="dmesg:${d#*] }"
	case_trace revoke /tmp/trace.revoke "" 0
	[[ ,${FT[host_statuses]}, =~ ,(-126|-128|-129)x ]] && ev="${ev:+$ev; }trace:${FT[host_statuses]}"
	result revoke_evidence "\"$ev\""
	[ -n "$ev" ] || fail "revoke: no ENOKEY/EKEYREVOKED/EKEYREJECTED for $c (dmesg or host handshake statuses '${FT[host_statuses]}')"
	[ "$(ctrl_attr "$c" state)" != live ] || fail "revoke: $c is live without its PSK"
	dmesg | grep -E " $c: " | tail -n 5 | sed 's/^/    dmesg: /'
	daemon_ok revoke
	# The revoked one keeps retrying: it goes, the next cases use the others.
	ctrl_delete "$c"
	CTRLS=("${others[@]}")
	storm_reap
	if ((FAILS > F0)); then CASE[revoke]=fail; else CASE[revoke]=pass; fi
	result revoke "${CASE[revoke]}"
}

for c in $FAULTS_CASES; do
	case $c in
	silent | kill | hup | emfile | revoke) "case_$c" ;;
	*) fail "unknown case $c" ;;
	esac
done
result lost "$LOST"
((LOST == 0)) || fail "$LOST requests or controllers lost"
ok=pass
for c in $FAULTS_CASES; do [ "${CASE[$c]:-fail}" = pass ] || ok=fail; done
((FAILS == 0)) || ok=fail
say "all cases: $ok (init prints RESULT faults.status from the exit status)"
systemctl show -p ActiveState,SubState,MainPID,NRestarts "$UNIT" | sed 's/^/    show: /'
finish
