#!/bin/bash
# storm: many handshakes at once, per daemon, for side-by-side numbers.
#   1. STORM_K subsystems on one TLS port (null_blk namespaces), one PSK each;
#   2. per daemon: warm-up connect; connect storm: STORM_K `nvme connect
#      --tls` at once. The kernel serialises these (nvmf_dev_write() holds
#      nvmf_dev_mutex across controller creation, handshakes included), so
#      this measures back-to-back connects;
#   3. reset storm: every controller reset at once (sysfs reset_controller;
#      resets run in parallel on nvme-reset-wq): up to 2 x STORM_K requests
#      pending together. This is where net/handshake's cap on pending
#      requests per netns (clamp(RAM pages / 102400, 3, 50): 4 with 2 GiB)
#      refuses submits with -EAGAIN (tracepoint handshake_submit_err
#      err=-11; the kernel logs "failed to start TLS ... -11") and
#      controllers retry after --reconnect-delay. Measured: time until all
#      are live again, EAGAIN refusals, failed handshakes, the daemon's peak
#      RSS and PSS (sampled with builtins, summed over its process tree:
#      tlshd forks a child per handshake).
# Settings:
#   STORM_K                  subsystems / controllers                       [16]
#   STORM_DAEMONS            "name:/path:args name2:/path2:args2 ..." run one
#                            after the other in this boot; commas in args
#                            become spaces; no args = the usual defaults
#                            [<basename of $DAEMON>:$DAEMON with $DAEMON_ARGS]
#   STORM_RECONNECT_DELAY    nvme connect --reconnect-delay (s)             [1]
#   STORM_TIMEOUT            seconds for all controllers to be live again   [180]
#   STORM_SAMPLE_PERIOD      sampler period (s); off = no sampler           [0.02]
#   STORM_STRICT             1: a controller not live in time fails the run [1]
#   STORM_LOG_CONSOLE        stream the daemons' logs (hundreds of lines)   [0]
# RESULT keys, prefixed "<name>.": idle_rss_kb idle_pss_kb idle_anon_kb idle_threads
#   connect_storm_{seconds,failed,queues,handshakes,complete_err,eagain,
#   peak_rss_kb,peak_pss_kb,peak_anon_kb,peak_threads,peak_procs} reset_storm_{seconds,failed,
#   write_errors,handshakes,expected_handshakes,complete_err,cancel,
#   submit_err,eagain,dmesg_tls_start_failed,dmesg_eagain,peak_rss_kb,
#   peak_pss_kb,peak_procs,samples} ktls_after_reset ktls_left.
# shellcheck source=../lib.sh
. /harness/lib.sh
: "${STORM_K:=16}" "${STORM_RECONNECT_DELAY:=1}" "${STORM_TIMEOUT:=180}"
: "${STORM_SAMPLE_PERIOD:=0.02}" "${STORM_STRICT:=1}" "${STORM_LOG_CONSOLE:=0}"
DAEMON_LOG_CONSOLE=$STORM_LOG_CONSOLE
K=$STORM_K
NQNS=()
for ((i = 1; i <= K; i++)); do printf -v n 'nqn.2024-01.io.tlshd-go:storm-%0*d' "${#K}" "$i"; NQNS+=("$n"); done
read -r _ memkb _ </proc/meminfo
cap=$((memkb / 4 / 102400)); ((cap < 3)) && cap=3; ((cap > 50)) && cap=50
result k "$K"
result pending_cap_estimate "$cap"

null_disks "$K" || die "null_blk"
nvmet_port 1 "$ADDR" "$SVCID" || die "nvmet port"
for ((i = 0; i < K; i++)); do nvmet_subsys "${NQNS[i]}" "/dev/nullb$i" || die "subsystem ${NQNS[i]}"; done
nvmet_link 1 "${NQNS[@]}" || die "port links"
pids=()
for n in "${NQNS[@]}"; do psk_insert "$n" 1 & pids+=($!); done
wait "${pids[@]}"   # never a bare wait: the daemons and log tails are children too
for n in "${NQNS[@]}"; do key_serial psk "NVMe0R01 $HOSTNQN $n" || die "no PSK for $n"; done

CARGS=(-t tcp -a "$ADDR" -s "$SVCID" --hostnqn="$HOSTNQN" --hostid="$HOSTID" --tls
	--reconnect-delay="$STORM_RECONNECT_DELAY")
peaks() {   # key-prefix
	result "$1peak_rss_kb" "$PEAK_RSS"
	result "$1peak_pss_kb" "$PEAK_PSS"
	result "$1peak_anon_kb" "$PEAK_ANON"
	result "$1peak_threads" "$PEAK_THREADS"
	result "$1peak_procs" "$PEAK_N"
	result "$1samples" "$SAMPLES"
}
sample_on() { PEAK_RSS=0 PEAK_PSS=0 PEAK_N=0 SAMPLES=0 PEAK_ANON=0 PEAK_THREADS=0; [ "$STORM_SAMPLE_PERIOD" = off ] || sampler_start "$1" /tmp/peaks "$STORM_SAMPLE_PERIOD"; }
sample_off() { [ "$STORM_SAMPLE_PERIOD" = off ] || sampler_stop /tmp/peaks; }
dmesg_tls() {   # -> TLSFAIL EAGAIN_DMESG ("failed to start TLS" lines, those with -11)
	local r
	r=$(dmesg | awk '/failed to start TLS/ { n++; if (/-11$/) e++ } END { print n + 0, e + 0 }')
	read -r TLSFAIL EAGAIN_DMESG <<<"$r"
}

storm() {   # name bin args
	local name=$1 pid t0 i rc bad=0 queues=0 c st live
	local -a ctrls=()
	local -A job=()
	say "===== $name: $2 $3"
	trace_start
	daemon_start "$name" "$2" "$3" || return
	pid=${DPID[$name]}
	mem_of "$pid"
	result "$name.idle_rss_kb" "$MEM_RSS"
	result "$name.idle_anon_kb" "$MEM_ANON"
	result "$name.idle_threads" "$MEM_THREADS"
	result "$name.idle_pss_kb" "$MEM_PSS"
	nvme connect -n "${NQNS[0]}" "${CARGS[@]}" >/dev/null 2>&1 || { fail "$name: warm-up connect"; return; }
	ctrl_of "${NQNS[0]}" && ctrl_delete "$CTRL"

	# --- connect storm
	trace_clear
	sample_on "$pid"
	t0=${EPOCHREALTIME/./}
	for ((i = 0; i < K; i++)); do
		timeout "$STORM_TIMEOUT" nvme connect -n "${NQNS[i]}" "${CARGS[@]}" >"/tmp/storm-$i.log" 2>&1 &
		job[$!]=$i
	done
	for i in "${!job[@]}"; do wait "$i" || bad=$((bad + 1)); done
	result "$name.connect_storm_seconds" "$(elapsed "$t0")"
	sample_off
	peaks "$name.connect_storm_"
	for n in "${NQNS[@]}"; do
		ctrl_of "$n" || continue
		ctrls+=("$CTRL")
		st=$(ctrl_attr "$CTRL" state)
		[ "$st" = live ] && queues=$((queues + $(ctrl_attr "$CTRL" queue_count)))
	done
	wait_live 1 "${ctrls[@]}"
	result "$name.connect_storm_failed" $((K - ${#ctrls[@]} + LEFT))
	result "$name.connect_storm_queues" "$queues"
	((bad == 0 && LEFT == 0 && ${#ctrls[@]} == K)) || fail "$name: connect storm: $bad connects failed, $LEFT of ${#ctrls[@]} controllers not live"
	trace_save "/tmp/trace-$name-connect"
	trace_count "/tmp/trace-$name-connect"
	result "$name.connect_storm_handshakes" "${TRC[complete_ok]}"
	result "$name.connect_storm_complete_err" "${TRC[complete_err]}"
	result "$name.connect_storm_eagain" "${TRC[eagain]}"
	tls_stat
	((TLS_TX == 2 * queues && TLS_RX == 2 * queues)) || fail "$name: kTLS $TLS_TX/$TLS_RX after the connect storm, expected $((2 * queues))"

	# --- reset storm
	dmesg -C
	trace_clear
	sample_on "$pid"
	t0=${EPOCHREALTIME/./}
	# A write blocks until that controller's reset is done (or has failed
	# and waits to reconnect): one writer per controller.
	job=()
	for c in "${ctrls[@]}"; do
		{ echo 1 >"/sys/class/nvme/$c/reset_controller"; } 2>/dev/null &
		job[$!]=$c
	done
	bad=0
	for i in "${!job[@]}"; do wait "$i" || bad=$((bad + 1)); done
	wait_live "$STORM_TIMEOUT" "${ctrls[@]}"
	result "$name.reset_storm_seconds" "$(elapsed "$t0")"
	sample_off
	peaks "$name.reset_storm_"
	result "$name.reset_storm_failed" "$LEFT"
	result "$name.reset_storm_write_errors" "$bad"
	if ((LEFT)); then
		for c in "${ctrls[@]}"; do st=$(ctrl_attr "$c" state); [ "$st" = live ] || say "$c: $st"; done
		[ "$STORM_STRICT" = 1 ] && fail "$name: $LEFT controllers not live ${STORM_TIMEOUT}s after the reset storm"
	fi
	queues=0
	for c in "${ctrls[@]}"; do queues=$((queues + $(ctrl_attr "$c" queue_count))); done
	trace_save "/tmp/trace-$name-reset"
	trace_count "/tmp/trace-$name-reset"
	result "$name.reset_storm_handshakes" "${TRC[complete_ok]}"
	result "$name.reset_storm_expected_handshakes" $((2 * queues))
	# Every queue of every live controller needs one good handshake per end
	# (a reconnect that failed half-way redoes the ones it had: more is fine).
	((LEFT || TRC[complete_ok] >= 2 * queues)) || fail "$name: ${TRC[complete_ok]} good handshakes in the reset storm, expected at least $((2 * queues))"
	trace_results "$name.reset_storm_" complete_err cancel submit_err eagain accept_us_p50 accept_us_p90 accept_us_max burst_5ms
	result "$name.reset_storm_submit_errs" "${TRC[submit_errs]}"
	result "$name.reset_storm_statuses" "${TRC[statuses]}"
	dmesg_tls
	result "$name.reset_storm_dmesg_tls_start_failed" "$TLSFAIL"
	result "$name.reset_storm_dmesg_eagain" "$EAGAIN_DMESG"
	tls_stat
	result "$name.ktls_after_reset" "$TLS_TX/$TLS_RX"
	((LEFT || (TLS_TX == 2 * queues && TLS_RX == 2 * queues))) || fail "$name: kTLS $TLS_TX/$TLS_RX after the reset storm, expected $((2 * queues))"

	# --- teardown (sysfs: synchronous, no fork)
	for c in "${ctrls[@]}"; do ctrl_delete "$c"; done
	ktls_drained || fail "$name: kTLS sockets left after deleting the controllers: $TLS_TX/$TLS_RX"
	result "$name.ktls_left" $((TLS_TX + TLS_RX))
	daemon_alive "$name" || fail "$name: daemon died"
	daemon_stop "$name"
}

[ -n "${STORM_DAEMONS:-}" ] || STORM_DAEMONS="${DAEMON##*/}:$DAEMON"
for e in $STORM_DAEMONS; do
	name=${e%%:*} rest=${e#*:}
	if [[ $rest == *:* ]]; then bin=${rest%%:*} args=${rest#*:}; args=${args//,/ }
	else bin=$rest args=""; fi
	[ -n "$args" ] || args=$(daemon_args "$bin")
	storm "$name" "$bin" "$args"
done
finish
