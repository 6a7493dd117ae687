#!/bin/bash
# nvme-multi: MULTI_K subsystems on one TLS port, each with its own PSK and
# RAM disk; MULTI_K `nvme connect --tls` started at once (the kernel runs
# them one after the other: nvmf_dev_mutex), all controllers live, a
# write/read-back compare on every namespace (in parallel), all
# disconnected at once, kTLS socket counts right at each step.
# Settings: MULTI_K [4].
# RESULT keys: k, connect_all_seconds, connect_failed, queues, ktls_tx,
# ktls_rx, dd_failed, dd_all_seconds, disconnect_all_seconds,
# ktls_left, trace_*.
# shellcheck source=../lib.sh
. /harness/lib.sh
: "${MULTI_K:=4}"
K=$MULTI_K
NQNS=()
for ((i = 1; i <= K; i++)); do printf -v n 'nqn.2024-01.io.tlshd-go:multi-%02d' "$i"; NQNS+=("$n"); done
result k "$K"

ram_disks "$K" 16 || die "brd"
nvmet_port 1 "$ADDR" "$SVCID" || die "nvmet port"
for ((i = 0; i < K; i++)); do
	nvmet_subsys "${NQNS[i]}" "/dev/ram$i" || die "subsystem ${NQNS[i]}"
	psk_insert "${NQNS[i]}" 1 || finish
done
nvmet_link 1 "${NQNS[@]}" || die "port links"
trace_start
daemon_start main "$DAEMON" "$DAEMON_ARGS" || finish

say "$K connects at once"
declare -A job=()
t0=${EPOCHREALTIME/./}
for ((i = 0; i < K; i++)); do
	timeout "$CONNECT_TIMEOUT" nvme connect -t tcp -a "$ADDR" -s "$SVCID" -n "${NQNS[i]}" \
		--hostnqn="$HOSTNQN" --hostid="$HOSTID" --tls >"/tmp/connect-$i.log" 2>&1 &
	job[$!]=$i
done
bad=0
for pid in "${!job[@]}"; do
	wait "$pid" || { bad=$((bad + 1)); say "connect ${NQNS[${job[$pid]}]} failed: $(<"/tmp/connect-${job[$pid]}.log")"; }
done
result connect_all_seconds "$(elapsed "$t0")"
result connect_failed "$bad"
((bad == 0)) || fail "$bad of $K connects failed"

queues=0 ctrls=() devs=()
for n in "${NQNS[@]}"; do
	ctrl_of "$n" || { fail "no controller for $n"; continue; }
	[ "$(ctrl_attr "$CTRL" state)" = live ] || fail "$CTRL ($n) not live"
	queues=$((queues + $(ctrl_attr "$CTRL" queue_count)))
	ctrls+=("$CTRL")
	if ns_wait "$CTRL"; then devs+=("$NSDEV"); else fail "no namespace for $CTRL"; fi
done
result queues "$queues"
tls_stat
result ktls_tx "$TLS_TX"
result ktls_rx "$TLS_RX"
((TLS_TX == 2 * queues && TLS_RX == 2 * queues)) || fail "kTLS tx=$TLS_TX rx=$TLS_RX, expected $((2 * queues))"

t0=${EPOCHREALTIME/./}
declare -A ddjob=()
for d in "${devs[@]}"; do dd_check "$d" & ddjob[$!]=$d; done
ddbad=0
for pid in "${!ddjob[@]}"; do wait "$pid" || { ddbad=$((ddbad + 1)); fail "dd compare on ${ddjob[$pid]}"; }; done
result dd_all_seconds "$(elapsed "$t0")"
result dd_failed "$ddbad"

t0=${EPOCHREALTIME/./}
pids=()
for n in "${NQNS[@]}"; do nvme disconnect -n "$n" >/dev/null & pids+=($!); done
wait "${pids[@]}"   # never a bare wait: the daemon and its log tail are children too
result disconnect_all_seconds "$(elapsed "$t0")"
for n in "${NQNS[@]}"; do ctrl_of "$n" && fail "$n still connected"; done
ktls_drained || fail "kTLS sockets left 5 s after disconnect: tx=$TLS_TX rx=$TLS_RX"
result ktls_left $((TLS_TX + TLS_RX))

daemon_alive main || fail "daemon died"
trace_save /tmp/trace
trace_count /tmp/trace
trace_results trace_ submit accept "done" complete_ok complete_err submit_err cancel
((TRC[complete_ok] == 2 * queues)) || fail "trace: complete_ok=${TRC[complete_ok]}, expected $((2 * queues))"
((TRC[complete_err] + TRC[submit_err] + TRC[cancel] == 0)) || fail "trace: failed handshakes"
daemon_stop main
finish
