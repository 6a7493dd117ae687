# lib.sh - functions shared by the guest scenarios (sourced; bash).
#
# Every fork+exec costs 50-100 ms under TCG, so loops and anything timed use
# bash builtins: $EPOCHREALTIME, read, mapfile, printf -v, globs, and nap()
# (a read with a timeout) instead of sleep.
#
# Conventions: result KEY VALUE prints "RESULT <scenario>.KEY=VALUE" (the host
# collects these into results.txt); fail MSG counts a failure; finish exits 1
# if there was one. Functions that return several values set global
# variables named in their comment (e.g. "-> CTRL").
#
# Environment from init: HOSTNQN HOSTID DAEMON DAEMON_ARGS SCENARIO and the
# scenario settings passed by run.sh.

: "${SCENARIO:=shell}"
: "${DAEMON:=/usr/sbin/tlshd}"
: "${DAEMON_START_WAIT:=10}"     # seconds for a daemon to join the multicast group
: "${DAEMON_LOG_CONSOLE:=1}"     # stream daemon logs to the console, prefixed
                                 # (0: only their last lines, on failure)
: "${CONNECT_TIMEOUT:=60}"       # seconds for one nvme connect
: "${DD_MB:=2}"
REF_DAEMON=/usr/sbin/tlshd
CFS=/sys/kernel/config/nvmet
TR=/sys/kernel/tracing
ADDR=127.0.0.1
SVCID=4420
FAILS=0

# ---------------------------------------------------------------- basics ---
secs() { printf '%d.%03d' $(($1 / 1000000)) $(($1 / 1000 % 1000)); }    # us -> s.mmm
elapsed() { secs $((${EPOCHREALTIME/./} - $1)); }                        # since t0 (us)
result() { echo "RESULT $SCENARIO.$1=$2"; }
say() { echo "$SCENARIO: $*"; }
fail() { echo "${FAIL_WORD:-FAIL}: $SCENARIO: $*"; FAILS=$((FAILS + 1)); }
die() { fail "$*"; finish; }
finish() {
	local n
	kernel_log 25
	if ((FAILS)) && [ "$DAEMON_LOG_CONSOLE" != 1 ]; then
		for n in "${!DLOG[@]}"; do
			echo "--- daemon log $n (last 30 lines)"
			tail -n 30 "${DLOG[$n]}" | sed 's/^/    /'
		done
	fi
	if ((FAILS)); then say "FAILED ($FAILS)"; exit 1; fi
	say "ok"; exit 0
}
# Sleep without a fork: read with a timeout from a FIFO nobody writes to.
if [ -z "${NAP_FD:-}" ]; then
	mkfifo "/run/nap.$$" && exec {NAP_FD}<>"/run/nap.$$" && rm -f "/run/nap.$$"
fi
nap() { read -r -t "$1" -u "$NAP_FD" _ || :; }
is_ref() { [ "$1" = "$REF_DAEMON" ]; }
# Expected outcome of a test the reference tlshd 1.0.0 is known to fail:
# auto = fail for /usr/sbin/tlshd, pass for any other daemon.
expectation() {   # setting-value daemon -> pass|fail|any
	case $1 in pass | fail | any) echo "$1" ;; *) if is_ref "$2"; then echo fail; else echo pass; fi ;; esac
}
# Compare an outcome with its expectation: a mismatch either way is a failure.
judge() {   # what expected(pass|fail|any) outcome(pass|fail)
	result "$1_outcome" "$3"
	result "$1_expected" "$2"
	[ "$2" = any ] || [ "$2" = "$3" ] || fail "$1: outcome $3, expected $2"
}
kernel_log() {   # [lines]: last kernel lines about nvme / tls / handshake
	echo "--- kernel log (nvme|tls|handshake, last ${1:-25})"
	dmesg | grep -iE 'nvme|tls|handshake' | tail -n "${1:-25}" | sed 's/^/    /'
}
# Read a whole /proc file at once (a read loop on a seq_file can lose lines).
slurp() { mapfile -t SLURP 2>/dev/null <"$1"; }

# ------------------------------------------------------------- daemons ---
declare -A DPID=() DLOG=() DTAIL=()
# Arguments for a daemon binary when none are given.
daemon_args() {   # bin -> stdout
	if [ "$1" = "$DAEMON" ]; then echo "$DAEMON_ARGS"
	elif is_ref "$1"; then echo "-s -c /etc/tlshd.conf"
	elif [ -e /etc/tlshd-vm/daemon.conf ]; then echo "-s -c /etc/tlshd-vm/daemon.conf"
	else echo "-s -c /etc/tlshd.conf"; fi
}
# Generic netlink sockets joined to a multicast group in the netns of PID
# (the handshake family's "tlshd" group: nothing else in the VM joins one).
# -> GENL_N sockets, GENL_RMEM bytes queued on them (READY messages unread).
genl_listeners() {   # [pid]
	local l f
	GENL_N=0 GENL_RMEM=0
	slurp "/proc/${1:-self}/net/netlink"
	for l in "${SLURP[@]:1}"; do
		read -r -a f <<<"$l"   # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
		[ "${f[1]}" = 16 ] && [ "${f[3]}" != 00000000 ] || continue
		GENL_N=$((GENL_N + 1)) GENL_RMEM=$((GENL_RMEM + f[4]))
	done
}
# Start a daemon (own session and process group; in a netns if given) and
# wait until its netns has a genl multicast listener. -> DPID[name],
# DAEMON_READY_US. The netns must have no listener before.
daemon_start() {   # name bin args [netns]
	local name=$1 bin=$2 args=$3 ns=${4:-} t0 pid i ns_cmd=()
	[ -x "$bin" ] || { fail "daemon $bin missing"; return 1; }
	[ -n "$ns" ] && ns_cmd=(nsenter "--net=/run/netns/$ns")
	DLOG[$name]=/tmp/daemon-$name.log
	: >"${DLOG[$name]}"
	if [ "$DAEMON_LOG_CONSOLE" = 1 ] && [ -z "${DTAIL[$name]:-}" ]; then
		tail -n +1 -F "${DLOG[$name]}" 2>/dev/null | sed -u "s/^/[$name] /" &
		DTAIL[$name]=$!
	fi
	say "starting $name: ${ns:+netns $ns: }$bin $args"
	t0=${EPOCHREALTIME/./}
	# shellcheck disable=SC2086
	setsid "${ns_cmd[@]}" "$bin" $args >>"${DLOG[$name]}" 2>&1 </dev/null &
	pid=$!
	DPID[$name]=$pid
	for ((i = 0; i < DAEMON_START_WAIT * 50; i++)); do
		proc_live "$pid" || break
		genl_listeners "$pid"
		((GENL_N > 0)) && break
		nap 0.02
	done
	DAEMON_READY_US=$((${EPOCHREALTIME/./} - t0))
	if ! proc_live "$pid"; then fail "daemon $name exited at start"; tail -n 20 "${DLOG[$name]}"; return 1; fi
	((GENL_N > 0)) || { fail "daemon $name joined no multicast group in ${DAEMON_START_WAIT}s"; return 1; }
	say "$name: pid $pid, listening after $(secs "$DAEMON_READY_US") s"
}
# A process that exists and is not a zombie.
proc_live() {   # pid
	local buf=""
	IFS= read -r -d '' buf 2>/dev/null <"/proc/$1/status"
	[[ $buf == *State:* ]] && [[ $buf != *"State:"?[ZX]* ]]
}
daemon_alive() { [ -n "${DPID[$1]:-}" ] && proc_live "${DPID[$1]}"; }
# SIGTERM to the daemon's process group (forked children, wrappers), SIGKILL
# after 3 s; reaped; no listener of it left.
daemon_stop() {   # name [signal]
	local pid=${DPID[$1]:-} i
	[ -n "$pid" ] || return 0
	kill -"${2:-TERM}" -- "-$pid" 2>/dev/null
	for ((i = 0; i < 150; i++)); do
		proc_live "$pid" || break
		nap 0.02
	done
	kill -KILL -- "-$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	unset "DPID[$1]"
}
# Processes of a daemon's tree (forked children included): pids -> TREE
tree_of() {
	local -a kids
	local i=0 t
	TREE=("$1")
	while ((i < ${#TREE[@]})); do
		for t in /proc/"${TREE[i]}"/task/*/children; do
			kids=()
			read -r -a kids 2>/dev/null <"$t"
			TREE+=("${kids[@]}")
		done
		i=$((i + 1))
	done
}
# Memory of a daemon's tree, summed: -> MEM_RSS MEM_PSS (kB) MEM_N (processes)
mem_of() {   # pid
	local p buf v
	MEM_RSS=0 MEM_PSS=0 MEM_N=0 MEM_ANON=0 MEM_THREADS=0
	tree_of "$1"
	for p in "${TREE[@]}"; do
		buf=""
		IFS= read -r -d '' buf 2>/dev/null <"/proc/$p/status"
		[[ $buf == *VmRSS:* ]] || continue    # gone, or a zombie
		v=${buf#*VmRSS:}; MEM_RSS=$((MEM_RSS + ${v%%kB*}))
		v=${buf#*RssAnon:}; MEM_ANON=$((MEM_ANON + ${v%%kB*}))
		v=${buf#*Threads:}; v=${v%%$'\n'*}; MEM_THREADS=$((MEM_THREADS + v))
		MEM_N=$((MEM_N + 1))
		buf=""
		IFS= read -r -d '' buf 2>/dev/null <"/proc/$p/smaps_rollup"
		[[ $buf == *Pss:* ]] && { v=${buf#*Pss:}; MEM_PSS=$((MEM_PSS + ${v%%kB*})); }
	done
}
fd_count() { local f=(/proc/"$1"/fd/*); FDN=${#f[@]}; }   # -> FDN
# Background sampler of mem_of PID: peaks written to FILE when stopped.
sampler_start() {   # pid file [period-s]
	rm -f "$2.stop"
	(
		local pr=0 pp=0 pn=0 pa=0 pt=0 n=0
		while :; do
			mem_of "$1"
			((MEM_RSS > pr)) && pr=$MEM_RSS
			((MEM_PSS > pp)) && pp=$MEM_PSS
			((MEM_N > pn)) && pn=$MEM_N
			((MEM_ANON > pa)) && pa=$MEM_ANON
			((MEM_THREADS > pt)) && pt=$MEM_THREADS
			n=$((n + 1))
			[ -e "$2.stop" ] && break
			nap "${3:-0.02}"
		done
		echo "$pr $pp $pn $n $pa $pt" >"$2"
	) &
	SAMPLER_PID=$!
}
sampler_stop() {   # file -> PEAK_RSS PEAK_PSS PEAK_N SAMPLES PEAK_ANON PEAK_THREADS
	: >"$1.stop"
	wait "$SAMPLER_PID"
	read -r PEAK_RSS PEAK_PSS PEAK_N SAMPLES PEAK_ANON PEAK_THREADS <"$1"
}

# ---------------------------------------------------------- kernel state ---
# Sockets with software kTLS installed now, in PID's netns: -> TLS_TX TLS_RX
tls_stat() {   # [pid]
	local l
	TLS_TX=0 TLS_RX=0
	slurp "/proc/${1:-self}/net/tls_stat"
	for l in "${SLURP[@]}"; do
		case $l in TlsCurrTxSw*) TLS_TX=${l##*[[:space:]]} ;; TlsCurrRxSw*) TLS_RX=${l##*[[:space:]]} ;; esac
	done
}
# Ciphers of the kTLS sockets, from the kernel's ULP info (ss -i), e.g.
# "aes-gcm-128:6". ss (iproute2 6.15) names only AES-GCM-128/256; any other
# cipher (ChaCha20-Poly1305, AES-CCM) is counted as "other".
# ktls_drained [seconds]: wait (default 5 s) until no kTLS socket is
# left; TLS_TX/TLS_RX hold the last count. The target frees a queue's
# socket from a work item after disconnect returns, so a count taken at
# once may still see it.
ktls_drained() {
	local i
	for ((i = 0; i < ${1:-5} * 20; i++)); do tls_stat; ((TLS_TX + TLS_RX == 0)) && return 0; nap 0.05; done
	return 1
}
ktls_ciphers() {
	ss -Htni 2>/dev/null | awk '/tcp-ulp-tls/ {
		c = "other"; if (match($0, /cipher: [a-z0-9-]+/)) c = substr($0, RSTART + 8, RLENGTH - 8); n[c]++ }
		END { for (c in n) printf "%s%s:%d", (o++ ? "," : ""), c, n[c] }'
}

# net/handshake tracepoints (all handshake_* events, tls_alert_*; not the
# chatty tls_contenttype) and sched_process_fork (to map an accepting task
# to its daemon) are enabled once, by trace_setup at boot, and stay on:
# enabling the first event and disabling the last one patch kernel text
# (the sched_wakeup probe that records comms sits in ttwu_do_activate), and
# under multi-threaded TCG a vCPU can run the stale int3 of such a patch
# ("Oops: int3" in ttwu_do_activate, a guest panic). A scenario only starts
# and stops recording. Reading "trace" pauses recording: read it
# (trace_save) only outside timed windows.
trace_setup() {
	local e
	echo 0 >$TR/tracing_on
	echo 8192 >$TR/buffer_size_kb
	# One clock for all CPUs, so that the per-CPU buffers merge in true
	# order (the default "local" clock may drift between vCPUs).
	echo global >$TR/trace_clock
	for e in "$TR"/events/handshake/handshake_*/enable "$TR"/events/handshake/tls_alert_*/enable \
		"$TR"/events/sched/sched_process_fork/enable; do
		echo 1 >"$e"
	done
	: >$TR/trace
}
trace_start() {
	echo 0 >$TR/tracing_on
	: >$TR/trace
	echo 1 >$TR/tracing_on
}
trace_clear() { : >$TR/trace; }
trace_save() { grep -v '^#' $TR/trace >"$1"; }   # file
# Count the events of a saved trace: -> TRC[key] for submit submit_err
# eagain accept accept_err done done_err complete complete_ok complete_err
# cancel notify_err alert_send alert_recv; statuses ("-13x2,-5x1");
# host_status / target_status: non-zero statuses of requests submitted in
# process context (nvme connect: the host) / by a kernel worker (nvmet's
# accept work: the target; but host resets and reconnects run there too).
# With "name:pid,..." also <side>_accepts_by_<name> (or _by_other): which
# daemon tree (through the traced forks) sent each ACCEPT.
# Timing: accept_us_p50/p90/max, from a submit to its ACCEPT (how long a
# request counted against the kernel's pending cap), and burst_5ms, the
# most submits (taken or refused) within any 5 ms: what the cap meets.
# awk, shared by trace_count and trace_by_daemon: each request's wait from
# its submit to its ACCEPT -> lat[1..nl] (microseconds). The kernel traces
# a submit after it has queued the request and sent READY, so a daemon
# already sweeping can ACCEPT it first: a zero wait. A cancelled request's
# address may come back.
TRACE_WAIT_AWK='
		if (ev == "handshake_submit") { if (req in tacc) { lat[++nl] = 0; delete tacc[req] } else tsub[req] = ts }
		if (ev == "handshake_cmd_accept") { if (req in tsub) { lat[++nl] = int((ts - tsub[req]) * 1e6 + 0.5); delete tsub[req] } else tacc[req] = ts }
		if (ev == "handshake_cancel") delete tsub[req]'
declare -A TRC=()
trace_count() {   # file [daemons]
	local k v
	TRC=()
	while IFS='=' read -r k v; do TRC[$k]=$v; done < <(awk -v daemons="${2:-}" '
	BEGIN {
		n = split(daemons, d, ",")
		for (i = 1; i <= n; i++) { split(d[i], kv, ":"); dname[kv[2]] = kv[1] }
		split("submit submit_err eagain accept accept_err done done_err complete complete_ok " \
		      "complete_err cancel notify_err alert_send alert_recv", keys, " ")
		for (i in keys) c[keys[i]] = 0
	}
	{
		ev = ""
		for (i = 2; i <= NF; i++) if ($i ~ /^[a-z_]+:$/) { ev = substr($i, 1, length($i) - 1); break }
		if (ev == "") next
		delete a
		for (j = i + 1; j <= NF; j++) { eq = index($j, "="); if (eq) a[substr($j, 1, eq - 1)] = substr($j, eq + 1) }
		task = $1; pid = task; sub(/.*-/, "", pid); comm = task; sub(/-[0-9]+$/, "", comm)
		req = a["req"]
		ts = $(i - 1); sub(/:$/, "", ts); ts += 0
		if (ev == "handshake_submit" || ev == "handshake_submit_err") sts[++ns] = ts
		'"$TRACE_WAIT_AWK"'
		if (ev == "sched_process_fork") { parent[a["child_pid"]] = a["pid"]; next }
		if (ev == "handshake_submit") {
			c["submit"]++; side[req] = (comm ~ /^kworker\//) ? "target" : "host"
			if (req in early) { by[side[req] "_accepts_by_" early[req]]++; delete early[req] }
		}
		else if (ev == "handshake_submit_err") { c["submit_err"]++; if (a["err"] == -11) c["eagain"]++; errs[a["err"]]++ }
		else if (ev == "handshake_cmd_accept") {
			c["accept"]++
			if (n) {
				p = pid; g = 0
				while (!(p in dname) && (p in parent) && g++ < 64) p = parent[p]
				who = (p in dname) ? dname[p] : "other"
				if (req in side) by[side[req] "_accepts_by_" who]++
				else early[req] = who   # its submit is traced later (TRACE_WAIT_AWK)
			}
		}
		else if (ev == "handshake_cmd_accept_err") c["accept_err"]++
		else if (ev == "handshake_cmd_done") c["done"]++
		else if (ev == "handshake_cmd_done_err") c["done_err"]++
		else if (ev == "handshake_cancel") c["cancel"]++
		else if (ev == "handshake_notify_err") c["notify_err"]++
		else if (ev == "tls_alert_send") c["alert_send"]++
		else if (ev == "tls_alert_recv") c["alert_recv"]++
		else if (ev == "handshake_complete") {
			c["complete"]++
			st = a["status"]
			if (st == 0) c["complete_ok"]++
			else {
				c["complete_err"]++; stat[st]++
				s = side[req] "_status"; sst[s] = sst[s] (sst[s] == "" ? "" : "+") st
			}
		}
		if (ev == "handshake_complete" || ev == "handshake_cancel") delete side[req]   # the address may come back
	}
	END {
		for (r in early) by["unknown_accepts_by_" early[r]]++   # submit never traced
		for (i = 2; i <= nl; i++) { v = lat[i]; for (j = i - 1; j >= 1 && lat[j] > v; j--) lat[j + 1] = lat[j]; lat[j + 1] = v }
		if (nl) {   # nearest rank
			r = nl * 0.5; k = int(r); if (k < r) k++; print "accept_us_p50=" lat[k]
			r = nl * 0.9; k = int(r); if (k < r) k++; print "accept_us_p90=" lat[k]
			print "accept_us_max=" lat[nl]
		}
		b = 0; lo = 1
		for (i = 1; i <= ns; i++) { while (sts[i] - sts[lo] > 0.005) lo++; if (i - lo + 1 > b) b = i - lo + 1 }
		print "burst_5ms=" b
		for (k in c) print k "=" c[k]
		for (k in by) print k "=" by[k]
		for (k in sst) print k "=" sst[k]
		o = ""; for (k in stat) o = o (o == "" ? "" : ",") k "x" stat[k]; print "statuses=" o
		o = ""; for (k in errs) o = o (o == "" ? "" : ",") k "x" errs[k]; print "submit_errs=" o
	}' "$1")
}
trace_results() {   # key-prefix keys...
	local p=$1 k
	shift
	for k; do result "$p$k" "${TRC[$k]:-0}"; done
}

# ----------------------------------------------------- TLS on the wire ---
# The plaintext handshake messages on TCP port $SVCID of lo (tlswire.pl:
# ClientHello, ServerHello, alerts), so that a scenario can judge what a
# handshake negotiated from the bytes on the wire, not from the daemon's
# log. wire_start before the connect, wire_stop after it: -> /tmp/wire.log
wire_start() {
	rm -f /tmp/wire.log /tmp/wire.ready
	perl /harness/tlswire.pl "$SVCID" /tmp/wire.log /tmp/wire.ready &
	WIRE_PID=$!
	local i
	for ((i = 0; i < 250; i++)); do [ -e /tmp/wire.ready ] && return 0; proc_live "$WIRE_PID" || break; nap 0.02; done
	fail "tlswire.pl did not start"
	return 1
}
wire_stop() {
	nap 0.2   # the last frames of the connect
	[ -n "${WIRE_PID:-}" ] && { kill "$WIRE_PID" 2>/dev/null; wait "$WIRE_PID" 2>/dev/null; }
	WIRE_PID=""
	touch /tmp/wire.log
	sed 's/^/    wire: /' /tmp/wire.log
}
# Lines of /tmp/wire.log of a kind (CH, SH, ALERT) with all the given
# key=value fields (whole fields): -> stdout
wire_count() {   # kind key=value...
	awk -v want="$*" 'BEGIN { n = split(want, w, " ") }
		{ ok = 1; for (i = 1; i <= n; i++) if (index(" " $0 " ", " " w[i] " ") == 0) { ok = 0; break }; c += ok }
		END { print c + 0 }' /tmp/wire.log
}

# ------------------------------------------------------------ nvmet side ---
# Memory-backed namespaces (brd: reads return what was written).
ram_disks() {   # count MiB -> /dev/ram0..
	local i
	modprobe brd rd_nr="$1" rd_size=$(($2 * 1024)) || return 1
	for ((i = 0; i < 100; i++)); do [ -b "/dev/ram$(($1 - 1))" ] && return 0; nap 0.05; done
	return 1
}
# Not memory-backed (reads return zeroes), cheap: for many subsystems.
null_disks() {   # count -> /dev/nullb0..
	local i
	modprobe null_blk nr_devices="$1" gb=1 || return 1
	for ((i = 0; i < 100; i++)); do [ -b "/dev/nullb$(($1 - 1))" ] && return 0; nap 0.05; done
	return 1
}
# A TCP port with TLS 1.3 required. Pitfalls: addr_tsas needs addr_trtype=tcp
# first (else EINVAL); addr_* cannot change once a subsystem is linked.
nvmet_port() {   # id addr svcid
	local p=$CFS/ports/$1
	mkdir "$p" &&
		echo tcp >"$p/addr_trtype" && echo ipv4 >"$p/addr_adrfam" &&
		echo "$2" >"$p/addr_traddr" && echo "$3" >"$p/addr_trsvcid" &&
		echo tls1.3 >"$p/addr_tsas" && echo required >"$p/addr_treq"
}
# A subsystem that admits $HOSTNQN only, namespace 1 on a block device.
nvmet_subsys() {   # nqn dev
	local s=$CFS/subsystems/$1
	[ -d "$CFS/hosts/$HOSTNQN" ] || mkdir "$CFS/hosts/$HOSTNQN" || return 1
	mkdir "$s" && echo 0 >"$s/attr_allow_any_host" &&
		ln -s "$CFS/hosts/$HOSTNQN" "$s/allowed_hosts/" &&
		mkdir "$s/namespaces/1" && echo -n "$2" >"$s/namespaces/1/device_path" &&
		echo 1 >"$s/namespaces/1/enable"
}
# Linking enables the port: the listening socket is created in the netns of
# the writer, hence nsenter (not "ip netns exec", which remounts /sys).
nvmet_link() {   # port-id nqn... [--netns NS first]
	local ns=""
	[ "$1" = --netns ] && { ns=$2; shift 2; }
	local p=$CFS/ports/$1
	shift
	if [ -n "$ns" ]; then
		nsenter --net="/run/netns/$ns" ln -s "${@/#/$CFS/subsystems/}" "$p/subsystems/"
	else
		ln -s "${@/#/$CFS/subsystems/}" "$p/subsystems/"
	fi
}

# ------------------------------------------------------------------ PSKs ---
# A configured PSK for ($HOSTNQN, nqn), identity version 0: description
# "NVMe0R0<hmac> <hostnqn> <nqn>" (hmac 1 = SHA-256, 2 = SHA-384), type psk,
# in .nvme or the given keyring. nvme-cli's short options are misleading
# (-n is the host NQN, -i is --insert): long options only.
# Identities are matched by PREFIX in the kernel: no NQN may be a prefix of
# another one in use (zero-pad indexes).
psk_insert() {   # nqn [hmac] [keyring]
	local out
	out=$(nvme gen-tls-key --hostnqn="$HOSTNQN" --subsysnqn="$1" --hmac="${2:-1}" --identity=0 \
		${3:+--keyring="$3"} --insert 2>&1) || { echo "$out"; fail "gen-tls-key for $1"; return 1; }
}
# Serial of a live key of TYPE whose description is exactly DESC: -> KEY_SERIAL
# (/proc/keys: serial flags usage expiry perm uid gid type description: summary)
key_serial() {   # type desc
	local l re='^([0-9a-f]+) +([^ ]+) +[0-9]+ +[^ ]+ +[0-9a-f]+ +[0-9]+ +[0-9]+ +([^ ]+) +(.*)$'
	KEY_SERIAL=""
	slurp /proc/keys
	for l in "${SLURP[@]}"; do
		[[ $l =~ $re ]] || continue
		[ "${BASH_REMATCH[3]}" = "$1" ] && [ "${BASH_REMATCH[4]%: *}" = "$2" ] || continue
		[[ ${BASH_REMATCH[2]} == *[RDNi]* ]] && continue   # revoked, dead, negative, invalidated
		KEY_SERIAL=$((16#${BASH_REMATCH[1]}))
		return 0
	done
	return 1
}

# ------------------------------------------------------------- NVMe host ---
# nvme connect --tls to $ADDR:$SVCID, timed. -> CONNECT_RC CONNECT_US;
# output in /tmp/connect.log (echoed, indented)
nvme_connect() {   # nqn [extra args...]
	local nqn=$1 t0
	shift
	t0=${EPOCHREALTIME/./}
	timeout "$CONNECT_TIMEOUT" nvme connect -t tcp -a "$ADDR" -s "$SVCID" -n "$nqn" \
		--hostnqn="$HOSTNQN" --hostid="$HOSTID" --tls "$@" >/tmp/connect.log 2>&1
	CONNECT_RC=$?
	CONNECT_US=$((${EPOCHREALTIME/./} - t0))
	sed 's/^/    nvme: /' /tmp/connect.log
	return "$CONNECT_RC"
}
# Connect by writing the options to /dev/nvme-fabrics, for options that
# nvme-cli does not pass on (2.13 silently drops --keyring).
# -> CONNECT_RC (0 or 1) CONNECT_US FABRICS_REPLY ("instance=N,cntlid=M")
fabrics_connect() {   # "nqn=...[,more options]"
	local fd t0
	t0=${EPOCHREALTIME/./}
	exec {fd}<>/dev/nvme-fabrics
	CONNECT_RC=1 FABRICS_REPLY=""
	if printf '%s' "transport=tcp,traddr=$ADDR,trsvcid=$SVCID,hostnqn=$HOSTNQN,hostid=$HOSTID,tls,$1" \
		1>&"$fd" 2>/dev/null; then
		CONNECT_RC=0
		read -r FABRICS_REPLY <&"$fd"
	fi
	CONNECT_US=$((${EPOCHREALTIME/./} - t0))
	exec {fd}>&-
	return "$CONNECT_RC"
}
# The controller of a subsystem: -> CTRL (nvmeN or "")
ctrl_of() {   # nqn
	local c s
	CTRL=""
	for c in /sys/class/nvme/nvme*; do
		s=""
		read -r s 2>/dev/null <"$c/subsysnqn"
		[ "$s" = "$1" ] && { CTRL=${c##*/}; return 0; }
	done
	return 1
}
ctrl_attr() { local v=""; read -r v 2>/dev/null <"/sys/class/nvme/$1/$2"; echo "$v"; }
# The namespace block device of a controller (appears asynchronously; with
# native multipath the sysfs child is nvmeXcYnZ, the node /dev/nvmeXnZ). -> NSDEV
ns_wait() {   # ctrl [seconds]
	local i d n
	NSDEV=""
	for ((i = 0; i < ${2:-10} * 20; i++)); do
		for d in /sys/class/nvme/"$1"/nvme*n1; do
			n=${d##*/}
			[[ $n =~ ^(nvme[0-9]+)c[0-9]+(n[0-9]+)$ ]] && n=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
			[ -b "/dev/$n" ] && { NSDEV=/dev/$n; return 0; }
		done
		nap 0.05
	done
	return 1
}
# Write DD_MB MiB of random data with O_DIRECT, read back, compare. -> DD_US
dd_check() {   # dev
	local t0 p=/tmp/dd-pattern-${1##*/}
	t0=${EPOCHREALTIME/./}
	head -c $((DD_MB << 20)) /dev/urandom >"$p"
	dd if="$p" of="$1" bs=1M oflag=direct conv=fsync status=none &&
		dd if="$1" of="$p.back" bs=1M count="$DD_MB" iflag=direct status=none &&
		cmp -s "$p" "$p.back"
	local rc=$?
	DD_US=$((${EPOCHREALTIME/./} - t0))
	rm -f "$p" "$p.back"
	return $rc
}
ctrl_delete() { echo 1 2>/dev/null >"/sys/class/nvme/$1/delete_controller"; }   # synchronous
# Wait until the given controllers are all live: -> LEFT (not live)
wait_live() {   # seconds ctrl...
	local deadline=$((${EPOCHREALTIME/./} + $1 * 1000000)) c st
	shift
	while :; do
		LEFT=0
		for c; do
			st=""
			read -r st 2>/dev/null <"/sys/class/nvme/$c/state"
			[ "$st" = live ] || LEFT=$((LEFT + 1))
		done
		((LEFT == 0 || ${EPOCHREALTIME/./} > deadline)) && return $((LEFT > 0))
		nap 0.02
	done
}

# One full check of a connected subsystem: controller, namespace, kTLS on
# 2 x queue_count sockets (host + target end of every queue), I/O.
# -> CTRL NSDEV QUEUES
verify_connected() {   # nqn [key-prefix]
	local p=${2:-}
	ctrl_of "$1" || { fail "no controller for $1"; return 1; }
	QUEUES=$(ctrl_attr "$CTRL" queue_count)
	say "$1: $CTRL state $(ctrl_attr "$CTRL" state), address $(ctrl_attr "$CTRL" address), queue_count $QUEUES, tls_key $(ctrl_attr "$CTRL" tls_key)"
	result "${p}queue_count" "$QUEUES"
	ns_wait "$CTRL" || { fail "no namespace block device for $CTRL"; return 1; }
	tls_stat
	result "${p}ktls_tx" "$TLS_TX"
	result "${p}ktls_rx" "$TLS_RX"
	if [ "$TLS_TX" != $((2 * QUEUES)) ] || [ "$TLS_RX" != $((2 * QUEUES)) ]; then
		fail "kTLS sockets tx=$TLS_TX rx=$TLS_RX, expected $((2 * QUEUES)) each"
	fi
	if dd_check "$NSDEV"; then result "${p}dd" ok; else result "${p}dd" mismatch; fail "dd compare on $NSDEV"; fi
	result "${p}dd_seconds" "$(secs "$DD_US")"
}

# -------------------------------------------------------------- cleanup ---
# INIT=systemd: init runs as tlshd-vm-harness.service, where kill -1 would
# also hit journald and systemd's helpers. Stop the units scenarios start
# (tlshd-go.service; tlshd.service is masked), then kill every process of
# the harness's cgroup but init itself.
harness_kill_others() {
	local cg p n i procs=()
	systemctl stop 'tlshd-go*.service' 2>/dev/null
	systemctl reset-failed 2>/dev/null
	read -r cg </proc/self/cgroup
	cg=/sys/fs/cgroup${cg#0::}
	for ((i = 0; i < 50; i++)); do
		mapfile -t procs 2>/dev/null <"$cg/cgroup.procs"
		n=0
		for p in "${procs[@]}"; do
			((p == $$)) && continue
			kill -KILL "$p" 2>/dev/null
			n=$((n + 1))
		done
		((n == 0)) && break
		nap 0.05
	done
}
# Called by init (PID 1) after every scenario: a clean slate for the next.
cleanup_all() {
	local c p s n f
	nfs_cleanup_all   # NFS mounts and nfsd first: their servers' namespaces go below
	for c in /sys/class/nvme/nvme*; do [ -e "$c/delete_controller" ] && ctrl_delete "${c##*/}"; done
	if (($$ == 1)); then
		kill -KILL -1 2>/dev/null     # from PID 1: every process but init
	else
		harness_kill_others           # INIT=systemd
	fi
	wait 2>/dev/null
	for p in "$CFS"/ports/*; do
		[ -d "$p" ] || continue
		rm -f "$p"/subsystems/* "$p"/referrals/* 2>/dev/null
		rmdir "$p"
	done
	for s in "$CFS"/subsystems/*; do
		[ -d "$s" ] || continue
		rm -f "$s"/allowed_hosts/*
		for n in "$s"/namespaces/*; do
			[ -d "$n" ] || continue
			echo 0 >"$n/enable"
			rmdir "$n"
		done
		rmdir "$s"
	done
	for f in "$CFS"/hosts/*; do [ -d "$f" ] && rmdir "$f"; done
	for n in /run/netns/*; do [ -e "$n" ] && ip netns del "${n##*/}"; done
	modprobe -r -q brd null_blk veth 2>/dev/null
	key_serial keyring .nvme && keyctl clear "$KEY_SERIAL" >/dev/null 2>&1
	echo 0 >$TR/tracing_on
	[ -e $TR/events/sunrpc/enable ] && echo 0 >$TR/events/sunrpc/enable   # nfs-tls's; trace_setup's stay
	: >$TR/trace
	dmesg -C
	rm -rf /tmp/*
}

# ------------------------------------------------------- x509 (openssl) ---
# A throw-away PKI made with openssl in the guest: EC P-256 keys, a CA, leaf
# certificates with SANs and EKUs, and a CRL. Serial numbers are explicit
# (a CRL names them).
pki_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null && chmod 600 "$1"; }
pki_ca() {   # dir cn -> dir/ca.pem dir/ca.key
	mkdir -p "$1" && pki_key "$1/ca.key" &&
		openssl req -x509 -new -key "$1/ca.key" -out "$1/ca.pem" -days 3650 -subj "/CN=$2" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
pki_leaf() {   # dir name cn san eku serial -> dir/name.pem dir/name.key
	local d=$1 n=$2
	pki_key "$d/$n.key" || return 1
	printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n' \
		"$4" "$5" >"$d/$n.ext"
	openssl req -new -key "$d/$n.key" -subj "/CN=$3" -out "$d/$n.csr" 2>/dev/null &&
		openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial "$6" \
			-days 3650 -extfile "$d/$n.ext" -out "$d/$n.pem" 2>/dev/null
	local rc=$?
	rm -f "$d/$n.csr" "$d/$n.ext"
	return $rc
}
# Revoke leaf certificates and (re)issue dir/crl.pem (PEM, signed by the CA).
pki_revoke() {   # dir name...
	local d=$1 n
	shift
	[ -e "$d/index.txt" ] || { : >"$d/index.txt"; echo 01 >"$d/crlnumber"; }
	printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s\ncertificate = %s\nprivate_key = %s\ndefault_md = sha256\ndefault_crl_days = 3650\n' \
		"$d/index.txt" "$d/crlnumber" "$d/ca.pem" "$d/ca.key" >"$d/ca.cnf"
	for n; do openssl ca -config "$d/ca.cnf" -revoke "$d/$n.pem" >/dev/null 2>&1 || return 1; done
	openssl ca -config "$d/ca.cnf" -gencrl -out "$d/crl.pem" >/dev/null 2>&1
}

# ------------------------------------------------------ trace by daemon ---
# Handshakes of a saved trace (trace_start) per daemon: each ACCEPT is
# attributed to the daemon whose process it came from: the accepting task's
# thread group (options/record-tgid, set by trace_tgid) is the daemon, or a
# process forked from it (tlshd forks a child per request; fork events traced).
# -> TRD[<name>_accepts] TRD[<name>_ok] TRD[<name>_failed]
#    TRD[<name>_statuses] ("-13x1,-110x2") TRD[<name>_cancel],
#    TRD[unaccepted] (submitted, never accepted), TRD[other_accepts]
declare -A TRD=()
trace_tgid() { echo "${1:-1}" >$TR/options/record-tgid; }   # [0|1]
trace_by_daemon() {   # file name:pid,...
	local k v
	TRD=()
	while IFS='=' read -r k v; do TRD[$k]=$v; done < <(awk -v daemons="$2" '
	BEGIN {
		n = split(daemons, d, ",")
		for (i = 1; i <= n; i++) { split(d[i], kv, ":"); dname[kv[2]] = kv[1]; names[kv[1]] = 1 }
	}
	function owner(p,   g) {
		g = 0
		while (!(p in dname) && (p in parent) && g++ < 64) p = parent[p]
		return (p in dname) ? dname[p] : "other"
	}
	{
		ev = ""
		for (i = 2; i <= NF; i++) if ($i ~ /^[a-z_]+:$/) { ev = substr($i, 1, length($i) - 1); break }
		if (ev == "") next
		delete a
		for (j = i + 1; j <= NF; j++) { eq = index($j, "="); if (eq) a[substr($j, 1, eq - 1)] = substr($j, eq + 1) }
		pid = $1; sub(/.*-/, "", pid)
		tgid = pid
		if (match($0, /\( *[0-9]+\)/)) { tgid = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", tgid) }
		req = a["req"]
		ts = $(i - 1); sub(/:$/, "", ts); ts += 0
		if (ev == "handshake_submit" || ev == "handshake_submit_err") sts[++ns] = ts
		'"$TRACE_WAIT_AWK"'
		if (ev == "sched_process_fork") { parent[a["child_pid"]] = a["pid"]; next }
		if (ev == "handshake_submit") { sub_[req] = 1; order[++nreq] = req }
		else if (ev == "handshake_cmd_accept") {
			o = owner(tgid); if (o == "other") o = owner(pid)
			by[req] = o; c[o "_accepts"]++
		}
		else if (ev == "handshake_cancel") { o = (req in by) ? by[req] : "unaccepted"; c[o "_cancel"]++ }
		else if (ev == "handshake_complete") {
			o = (req in by) ? by[req] : "unaccepted"; st = a["status"]
			if (st == 0) c[o "_ok"]++
			else { c[o "_failed"]++; k = o SUBSEP st; stat[k]++ }
		}
	}
	END {
		for (r in sub_) if (!(r in by)) c["unaccepted"]++
		names["other"] = 1
		for (nm in names) {
			for (x in stat) { split(x, p, SUBSEP); if (p[1] == nm) s[nm] = s[nm] (s[nm] == "" ? "" : ",") p[2] "x" stat[x] }
			print nm "_accepts=" c[nm "_accepts"] + 0
			print nm "_ok=" c[nm "_ok"] + 0
			print nm "_failed=" c[nm "_failed"] + 0
			print nm "_cancel=" c[nm "_cancel"] + 0
			print nm "_statuses=" s[nm]
		}
		print "unaccepted=" c["unaccepted"] + 0
	}' "$1")
}

# ------------------------------------------------------------------ NFS ---
# nfsd in a network namespace: its pseudo filesystems (/proc/fs/nfsd,
# rpc_pipefs) are per netns, so they are mounted from inside it (nsenter
# --net keeps the mount namespace: the mounts are visible to all, bound to
# that netns). NFSv4 only: no rpcbind, no statd.
# Grace period: without client tracking nfsd refuses OPENs for 90 s (and
# writing v4_end_grace is refused: UMH and legacy tracking do not work
# outside init_net, 7.x has no legacy tracking at all). nfsdcld (cld v2)
# with an empty database lets nfsd skip grace; nfsd gives nfsdcld 1 s to
# open the pipe it creates, so nfsdcld must watch the pipe directory first.
# -> NFSD_NS NFSD_PIDS (mountd, nfsdcld) NFSD_GRACE ("Y" once over)
NFSD_NS="" NFSD_PIDS=()
nfs_server_start() {   # netns exports-file
	local ns=$1 x=(nsenter "--net=/run/netns/$1") i f ok=0 g=N pid
	NFSD_NS=$ns NFSD_PIDS=()
	modprobe -a nfsd nfsv4 || { fail "modprobe nfsd nfsv4"; return 1; }
	cp "$2" /etc/exports
	mkdir -p /run/rpc_pipefs /var/lib/nfs/nfsdcld /var/lib/nfs/v4recovery
	"${x[@]}" mount -t nfsd nfsd /proc/fs/nfsd || { fail "mount nfsd (netns $ns)"; return 1; }
	"${x[@]}" mount -t rpc_pipefs rpc_pipefs /run/rpc_pipefs || { fail "mount rpc_pipefs (netns $ns)"; return 1; }
	setsid "${x[@]}" nfsdcld -F >/tmp/nfsdcld.log 2>&1 </dev/null &
	pid=$!
	NFSD_PIDS+=("$pid")
	for ((i = 0; i < 100 && !ok; i++)); do
		for f in /proc/"$pid"/fdinfo/*; do
			[[ $(<"$f") == *"inotify wd:"* ]] && ok=1
		done 2>/dev/null
		((ok)) || nap 0.05
	done
	((ok)) || say "nfsdcld not watching its pipe directory after 5 s: expect a grace period"
	"${x[@]}" exportfs -ra 2>&1 | sed 's/^/    exportfs: /'
	setsid "${x[@]}" rpc.mountd -F -N 2 -N 3 >/tmp/mountd.log 2>&1 </dev/null &
	NFSD_PIDS+=("$!")
	"${x[@]}" rpc.nfsd -N 3 -G 10 4 >/tmp/rpc.nfsd.log 2>&1 || { fail "rpc.nfsd: $(cat /tmp/rpc.nfsd.log)"; return 1; }
	for ((i = 0; i < 300; i++)); do
		read -r g </proc/fs/nfsd/v4_end_grace
		[ "$g" = Y ] && break
		((i == 0)) && { echo Y >/proc/fs/nfsd/v4_end_grace; } 2>/dev/null
		nap 0.1
	done
	NFSD_GRACE=$g
}
nfs_server_stop() {
	local p
	[ -n "$NFSD_NS" ] || return 0
	[ -e /proc/fs/nfsd/threads ] && echo 0 >/proc/fs/nfsd/threads 2>/dev/null
	nsenter "--net=/run/netns/$NFSD_NS" exportfs -au >/dev/null 2>&1
	for p in "${NFSD_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${NFSD_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	NFSD_PIDS=() NFSD_NS=""
	umount /run/rpc_pipefs 2>/dev/null
	umount /proc/fs/nfsd 2>/dev/null
}
# NFS mounts, nfsd threads and its pseudo filesystems, whatever a scenario
# left (init calls it before removing the namespaces). Lazy, forced
# unmounts: a mount whose server is gone must not hang the next scenario.
nfs_cleanup_all() {
	local l f
	slurp /proc/mounts
	for l in "${SLURP[@]}"; do
		read -r -a f <<<"$l"
		case ${f[2]} in nfs | nfs4) timeout 10 umount -f -l "${f[1]}" 2>/dev/null ;; esac
	done
	[ -e /proc/fs/nfsd/threads ] && echo 0 >/proc/fs/nfsd/threads 2>/dev/null
	grep -q ' /run/rpc_pipefs ' /proc/mounts && umount -l /run/rpc_pipefs
	grep -q ' /proc/fs/nfsd ' /proc/mounts && umount -l /proc/fs/nfsd
	echo 0 >$TR/options/record-tgid 2>/dev/null   # trace_tgid
	return 0
}
# kTLS sockets on NFS connections (port 2049) in a netns, with their ciphers
# (ss -i; iproute2 names only AES-GCM): -> "aes-gcm-128:1" or ""
ktls_ciphers_ns() {   # netns
	nsenter "--net=/run/netns/$1" ss -Htni '( sport = :2049 or dport = :2049 )' 2>/dev/null | awk '/tcp-ulp-tls/ {
		c = "other"; if (match($0, /cipher: [a-z0-9-]+/)) c = substr($0, RSTART + 8, RLENGTH - 8); n[c]++ }
		END { for (c in n) printf "%s%s:%d", (o++ ? "," : ""), c, n[c] }'
}
