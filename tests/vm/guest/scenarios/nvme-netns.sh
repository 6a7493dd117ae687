#!/bin/bash
# nvme-netns: NVMe host and target in two network namespaces joined by a
# veth pair, each namespace with its own daemon. net/handshake sends a
# request only to listeners in the netns of the socket being secured, so
# the host's ClientHello goes to the host-side daemon and the target's
# ServerHello to the target-side one. Proven from the kernel side: the task
# that sent each ACCEPT (handshake_cmd_accept) is traced back through the
# traced forks (sched_process_fork) to the daemon it belongs to.
# Pairings: host=HOST_DAEMON/target=TARGET_DAEMON, then the reverse if the
# two differ (interop both ways). Then a control: only the host-side daemon
# up, the connect must fail (the target's request finds no listener).
# Settings:
#   HOST_DAEMON, HOST_DAEMON_ARGS       [$DAEMON, its args]
#   TARGET_DAEMON, TARGET_DAEMON_ARGS   [/usr/sbin/tlshd, its args]
#   NETNS_CONTROL                       [1]
# Pitfall: configfs is written with `nsenter --net` (the port's listening
# socket is created in the writer's netns); `ip netns exec` mounts a fresh
# /sys without configfs.
# RESULT keys (per pairing pN): pN_host_daemon, pN_target_daemon,
# pN_connect_rc, pN_connect_seconds, pN_ktls_host_ns, pN_ktls_target_ns,
# pN_ktls_init_ns, pN_dd, pN_{host,target}_accepts_by_{host,target,other},
# pN_unknown_accepts_by_* (an ACCEPT whose submit the trace lacks);
# control_connect_rc, control_seconds, control_submit_errs.
# shellcheck source=../lib.sh
. /harness/lib.sh
: "${HOST_DAEMON:=$DAEMON}" "${TARGET_DAEMON:=$REF_DAEMON}" "${NETNS_CONTROL:=1}"
: "${HOST_DAEMON_ARGS=$(daemon_args "$HOST_DAEMON")}" "${TARGET_DAEMON_ARGS=$(daemon_args "$TARGET_DAEMON")}"
NQN=nqn.2024-01.io.tlshd-go:netns
TGT_ADDR=10.77.0.1 HST_ADDR=10.77.0.2

ram_disks 1 64 || die "brd"
ip netns add tgt && ip netns add hst || die "ip netns add"
ip link add veth-t type veth peer name veth-h && ip link set veth-t netns tgt && ip link set veth-h netns hst || die "veth"
ip -n tgt addr add "$TGT_ADDR/24" dev veth-t && ip -n tgt link set veth-t up && ip -n tgt link set lo up || die "tgt addr"
ip -n hst addr add "$HST_ADDR/24" dev veth-h && ip -n hst link set veth-h up && ip -n hst link set lo up || die "hst addr"
nvmet_port 1 "$TGT_ADDR" "$SVCID" && nvmet_subsys "$NQN" /dev/ram0 || die "nvmet"
nvmet_link --netns tgt 1 "$NQN" || die "port link in netns tgt"
psk_insert "$NQN" 1 || finish
listen=$(ip netns exec tgt ss -Hltn "sport = :$SVCID" | wc -l)
result target_listens_in_tgt "$listen"
((listen == 1)) || fail "nvmet port not listening in netns tgt"
ADDR=$TGT_ADDR

pairing() {   # n host-bin host-args target-bin target-args
	local p=p$1 hp tp
	say "pairing $1: host side $2, target side $4"
	result "${p}_host_daemon" "$2"
	result "${p}_target_daemon" "$4"
	trace_start
	daemon_start "host$1" "$2" "$3" hst || return 1
	daemon_start "target$1" "$4" "$5" tgt || return 1
	hp=${DPID[host$1]} tp=${DPID[target$1]}
	# nvme connect inside the host netns (its sockets are created there).
	local t0=${EPOCHREALTIME/./}
	nsenter --net=/run/netns/hst timeout "$CONNECT_TIMEOUT" nvme connect -t tcp -a "$ADDR" -s "$SVCID" \
		-n "$NQN" --hostnqn="$HOSTNQN" --hostid="$HOSTID" --tls >/tmp/connect.log 2>&1
	local rc=$?
	result "${p}_connect_rc" "$rc"
	result "${p}_connect_seconds" "$(elapsed "$t0")"
	sed 's/^/    nvme: /' /tmp/connect.log
	if ((rc != 0)); then
		fail "pairing $1: connect rc $rc"
	elif ctrl_of "$NQN"; then
		local q; q=$(ctrl_attr "$CTRL" queue_count)
		say "$CTRL $(ctrl_attr "$CTRL" address) queue_count $q"
		# tls_stat is per netns: the host ends in hst, the target ends in tgt.
		tls_stat "$hp"; result "${p}_ktls_host_ns" "$TLS_TX/$TLS_RX"
		((TLS_TX == q && TLS_RX == q)) || fail "pairing $1: kTLS in hst $TLS_TX/$TLS_RX, expected $q"
		tls_stat "$tp"; result "${p}_ktls_target_ns" "$TLS_TX/$TLS_RX"
		((TLS_TX == q && TLS_RX == q)) || fail "pairing $1: kTLS in tgt $TLS_TX/$TLS_RX, expected $q"
		tls_stat 1; result "${p}_ktls_init_ns" "$TLS_TX/$TLS_RX"
		((TLS_TX == 0 && TLS_RX == 0)) || fail "pairing $1: kTLS in init_net $TLS_TX/$TLS_RX, expected 0/0"
		if ns_wait "$CTRL" && dd_check "$NSDEV"; then result "${p}_dd" ok; else result "${p}_dd" fail; fail "pairing $1: I/O"; fi
		nvme disconnect -n "$NQN" >/dev/null
		trace_save "/tmp/trace-$p"
		trace_count "/tmp/trace-$p" "host:$hp,target:$tp"
		local k
		for k in host_accepts_by_host host_accepts_by_target host_accepts_by_other \
			target_accepts_by_target target_accepts_by_host target_accepts_by_other; do
			result "${p}_$k" "${TRC[$k]:-0}"
		done
		for k in "${!TRC[@]}"; do   # an ACCEPT whose submit the trace lacks
			[[ $k == unknown_accepts_by_* ]] && result "${p}_$k" "${TRC[$k]}"
		done
		if [ "${TRC[host_accepts_by_host]:-0}" != "$q" ] || [ "${TRC[target_accepts_by_target]:-0}" != "$q" ]; then
			grep -E 'handshake_(submit|cmd_accept)' "/tmp/trace-$p" | sed 's/^/    trace: /'
			fail "pairing $1: each side's $q requests were not all accepted by that side's daemon"
		fi
		((${TRC[host_accepts_by_target]:-0} + ${TRC[host_accepts_by_other]:-0} +
			${TRC[target_accepts_by_host]:-0} + ${TRC[target_accepts_by_other]:-0} == 0)) ||
			fail "pairing $1: requests accepted by the wrong daemon"
	else
		fail "pairing $1: no controller"
	fi
	daemon_alive "host$1" || fail "host-side daemon died"
	daemon_alive "target$1" || fail "target-side daemon died"
	daemon_stop "host$1"
	daemon_stop "target$1"
}

pairing 1 "$HOST_DAEMON" "$HOST_DAEMON_ARGS" "$TARGET_DAEMON" "$TARGET_DAEMON_ARGS"
if [ "$HOST_DAEMON" != "$TARGET_DAEMON" ]; then
	pairing 2 "$TARGET_DAEMON" "$TARGET_DAEMON_ARGS" "$HOST_DAEMON" "$HOST_DAEMON_ARGS"
	result pairings 2
else
	result pairings 1
fi

if [ "$NETNS_CONTROL" = 1 ]; then
	say "control: a daemon in hst only"
	trace_start
	daemon_start ctl "$HOST_DAEMON" "$HOST_DAEMON_ARGS" hst || finish
	t0=${EPOCHREALTIME/./}
	nsenter --net=/run/netns/hst timeout "$CONNECT_TIMEOUT" nvme connect -t tcp -a "$ADDR" -s "$SVCID" \
		-n "$NQN" --hostnqn="$HOSTNQN" --hostid="$HOSTID" --tls >/tmp/connect.log 2>&1
	rc=$?
	result control_connect_rc "$rc"
	result control_seconds "$(elapsed "$t0")"
	((rc != 0)) || fail "control: connect succeeded without a daemon in the target's netns"
	trace_save /tmp/trace-ctl
	trace_count /tmp/trace-ctl
	result control_submit_errs "${TRC[submit_errs]}"
	# No daemon listens in tgt: the target's submit finds no listener (-ESRCH).
	[[ ,${TRC[submit_errs]}, == *,-3x[0-9]*,* ]] || fail "control: no submit refused with -ESRCH (submit errors '${TRC[submit_errs]}')"
	((TRC[complete_ok] == 0)) || fail "control: ${TRC[complete_ok]} handshakes succeeded"
	nvme disconnect -n "$NQN" >/dev/null 2>&1
	daemon_stop ctl
fi
finish
