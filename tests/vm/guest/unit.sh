# shellcheck shell=bash
# unit.sh - helpers for scenarios that run tlshd-go from its systemd unit
# (INIT=systemd; sourced after lib.sh). Such a scenario has the line
# "# vm-init: systemd", which makes run.sh boot the guest with systemd.
#
# The unit is the project's systemd/tlshd-go.service, byte for byte (run.sh
# copies the tree's file to /harness/systemd/); the binary goes where the
# unit's ExecStart= and `make install` put it, /usr/sbin/tlshd-go, so no
# drop-in is needed. The policy is /etc/tlshd-go/config.toml, the daemon's
# default path (ExecStart= has no -c).
#
# Evidence comes from systemd (systemctl show), the journal (the daemon's
# stderr: one "msg=handshake" line per request) and the kernel.

UNIT=tlshd-go.service
UNIT_BIN=/usr/sbin/tlshd-go
UNIT_CONF=/etc/tlshd-go/config.toml
: "${UNIT_STATUS_WAIT:=8}"   # seconds for STATUS= (the daemon sends it every 5 s)

# systemd must be PID 1 and the daemon under test tlshd-go.
need_systemd() {
	local comm=""
	read -r comm 2>/dev/null </proc/1/comm
	[ "$comm" = systemd ] && [ -d /run/systemd/system ] ||
		die "needs systemd as PID 1 (INIT=systemd; PID 1 is '$comm')"
	"$DAEMON" -v 2>&1 | grep -q '^tlshd-go ' ||
		die "DAEMON=$DAEMON is not tlshd-go (run.sh DAEMON=bin/tlshd-go)"
}

# Install the binary and the unit as `make install` and systemd/README.md
# say; no drop-in. -> RESULT unit_identical, unit_dropins
unit_install() {
	local v
	install -D -m 0755 "$DAEMON" "$UNIT_BIN" || die "install $UNIT_BIN"
	install -D -m 0644 /harness/systemd/tlshd-go.service "/etc/systemd/system/$UNIT" || die "install $UNIT"
	rm -rf "/etc/systemd/system/$UNIT.d"
	systemctl daemon-reload || fail "systemctl daemon-reload"
	if cmp -s /harness/systemd/tlshd-go.service "/etc/systemd/system/$UNIT"; then v=yes; else v=no; fail "unit differs"; fi
	result unit_identical "$v"
	v=$(systemctl show -p DropInPaths --value "$UNIT")
	result unit_dropins "${v:-none}"
	say "unit: $(systemctl show -p FragmentPath,Type,NotifyAccess,ExecStart --value "$UNIT" | tr '\n' ' ' | cut -c1-200)"
}

# Stream the unit's journal to the console (DAEMON_LOG_CONSOLE=1), from now.
unit_log_console() {
	[ "$DAEMON_LOG_CONSOLE" = 1 ] || return 0
	journalctl -q -f -n0 -u "$UNIT" -o short-monotonic 2>/dev/null | sed -u 's/^/[journal] /' &
}

# Journal cursor "now": -> JCUR. Lines after it: journal_since.
journal_mark() { JCUR=$(journalctl -q -n0 --show-cursor 2>/dev/null | sed -n 's/^-- cursor: //p'); }
journal_since() {   # [cursor] -> the unit's lines (messages only) on stdout
	local c=${1:-$JCUR}
	journalctl -q -u "$UNIT" ${c:+--after-cursor="$c"} -o cat 2>/dev/null
}
# Wait until at least N of the unit's lines since the cursor match an ERE.
# -> JLINES (matching count); the lines are in /tmp/journal.since
journal_wait() {   # ere n [seconds]
	local deadline=$((${EPOCHREALTIME/./} + ${3:-10} * 1000000))
	while :; do
		journal_since >/tmp/journal.since
		JLINES=$(grep -cE -- "$1" /tmp/journal.since)
		((JLINES >= $2 || ${EPOCHREALTIME/./} > deadline)) && break
		nap 0.3
	done
	((JLINES >= $2))
}

# systemctl show, one property: -> stdout
prop() { systemctl show -p "$1" --value "$UNIT"; }
# Start and wait: Type=notify, so systemctl start returns once READY=1 came.
# -> MAINPID, START_US, START_RC
unit_start() {
	local t0=${EPOCHREALTIME/./}
	systemctl start "$UNIT"
	START_RC=$?
	START_US=$((${EPOCHREALTIME/./} - t0))
	MAINPID=$(prop MainPID)
}
# Wait for a non-empty StatusText matching an ERE (STATUS= every 5 s). -> STATUS_TEXT
status_wait() {   # ere [seconds]
	local deadline=$((${EPOCHREALTIME/./} + ${2:-$UNIT_STATUS_WAIT} * 1000000))
	while :; do
		STATUS_TEXT=$(prop StatusText)
		[[ $STATUS_TEXT =~ $1 ]] && return 0
		((${EPOCHREALTIME/./} > deadline)) && return 1
		nap 0.5
	done
}
# The daemon's handshake lines as records, one per line:
#   role=R sub=SUBSYS-NQN id=NVMe0R0x suite=S psk_mode=M group=G rule=R result=ok status=S error=...
# (sub and id from the logged identity "NVMe0R0x <hostnqn> <subnqn>").
hs_records() {   # file
	awk '/msg=handshake( |$)/ {
		s = $0; delete kv
		while (match(s, /[a-z_]+=("([^"\\]|\\.)*"|[^ ]*)/)) {
			t = substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH)
			e = index(t, "="); k = substr(t, 1, e - 1); v = substr(t, e + 1)
			if (v ~ /^"/) v = substr(v, 2, length(v) - 2)
			kv[k] = v
		}
		n = split(kv["identity"], id, " ")
		printf "role=%s sub=%s id=%s suite=%s psk_mode=%s group=%s rule=%s result=%s status=%s error=%s\n",
			kv["role"], (n >= 3 ? id[3] : "-"), (n >= 1 ? id[1] : "-"), kv["suite"], kv["psk_mode"],
			kv["group"], kv["rule"], kv["result"], kv["status"], kv["error"]
	}' "$1"
}
# Count records with all the given key=value pairs (whole words): -> stdout
hs_count() {   # records-file key=value...
	local f=$1
	shift
	awk -v want="$*" 'BEGIN { n = split(want, w, " ") }
		{ ok = 1; for (i = 1; i <= n; i++) if (index(" " $0 " ", " " w[i] " ") == 0) { ok = 0; break }; c += ok }
		END { print c + 0 }' "$f"
}
# The sandbox as the kernel sees it, from /proc/<pid>/status. -> RESULT,
# and SANDBOX_CAPBND SANDBOX_CAPEFF SANDBOX_NONEWPRIVS SANDBOX_SECCOMP
# SANDBOX_SECCOMP_FILTERS SANDBOX_MOUNT_NS (own|shared) for the judging
unit_sandbox_results() {   # pid prefix
	local buf k v
	IFS= read -r -d '' buf 2>/dev/null <"/proc/$1/status"
	for k in CapBnd CapEff NoNewPrivs Seccomp Seccomp_filters; do
		v=""
		[[ $buf =~ (^|$'\n')$k:[[:space:]]*([^$'\n']*) ]] && v=${BASH_REMATCH[2]}
		result "$2${k,,}" "${v:-?}"
		printf -v "SANDBOX_${k^^}" '%s' "${v:-?}"
	done
	if [ "$(readlink "/proc/$1/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ]; then v=shared; else v=own; fi
	result "$2mount_ns" "$v"
	SANDBOX_MOUNT_NS=$v
}
