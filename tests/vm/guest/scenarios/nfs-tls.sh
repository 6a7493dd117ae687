#!/bin/bash
# nfs-tls: NFSv4.2 over TLS (RPC-with-TLS, RFC 9289) with x509 certificates.
# nfsd in netns nfssrv (10.99.0.1, "nfs-server"), the NFS client in netns
# nfscli (10.99.0.2), joined by a veth pair; each netns has its own
# handshake daemon (net/handshake sends a request to the daemon of the
# socket's netns). A CA, server and client certificates and a CRL are made
# in the guest with openssl; each daemon gets a policy written for its side
# (TOML for tlshd-go, tlshd.conf for /usr/sbin/tlshd).
#
# Exports (NFSv4 only): /srv/tls xprtsec=tls, /srv/mtls xprtsec=mtls.
# nfsd asks its daemon for an x509 handshake on every TLS connection and
# marks the transport peer-authenticated when DONE carries a REMOTE_AUTH
# (a verified client certificate); an xprtsec=tls export admits only
# unauthenticated TLS transports, xprtsec=mtls only authenticated ones. So
# one server policy serves both kinds of export: client_certificate =
# "optional" (verify a certificate if one is sent, tlshd's behaviour). A
# certificate that does not verify (revoked, untrusted) fails the handshake:
# it is not downgraded to an anonymous client.
#
# Cases, in this order (each a set of RESULT keys pN_<case>_*):
#   tls          mount -o xprtsec=tls nfs-server:/srv/tls: mount, write
#                NFS_IO_KB of random data, compare the server's copy, drop
#                caches, read back through NFS, compare; kTLS sockets in both
#                namespaces while mounted (TlsCurrTxSw/RxSw >= 1, and
#                TlsTxSw/RxSw grew); umount
#   mtls         the same with xprtsec=mtls on /srv/mtls (the client's daemon
#                presents its certificate; the mtls export admits only
#                transports nfsd marked peer-authenticated)
#   by_ip        xprtsec=tls by address: PEERNAME 10.99.0.1 (certificate IP SAN)
#   plain        mount without TLS of /srv/tls: refused by the export
#   wrong_name   xprtsec=tls to "nfs-wrongname" (same address, not in the
#                server certificate): the client's daemon refuses the server
#   nocert       xprtsec=tls (anonymous client) on /srv/mtls: the handshake
#                succeeds, the export refuses the unauthenticated transport
#   mtls_on_tls  xprtsec=mtls on /srv/tls: refused by the export, which
#                proves the server reported the client as authenticated
#   revoked      the client's daemon restarted with a certificate in the
#                server's CRL; xprtsec=mtls on /srv/mtls: the server's daemon
#                refuses it. /usr/sbin/tlshd 1.0.0 reads no CRL:
#                EXPECT_NFS_REVOKED pass|fail|any|auto (auto: fail for a
#                /usr/sbin/tlshd server, pass otherwise)            [auto]
#   nocert_cfg   the client's daemon restarted without a certificate;
#                xprtsec=mtls: the client's daemon has nothing to present
#   healthy      the good client certificate again, xprtsec=mtls on /srv/mtls:
#                the server's daemon that refused the above (same process)
#                still serves
#   required     the server's daemon restarted with client_certificate =
#                "required"; xprtsec=tls: refused in the handshake (TOML
#                servers only; tlshd cannot require one: "skipped")
#   required_mtls  the same server; xprtsec=mtls: mounts
# Every case also checks what nfsd made of each connection, from the flags
# of its svc_xprt events (kernel side, whatever the daemons log): mtls =
# TLS_SESSION|PEER_AUTH (the server's daemon reported a REMOTE_AUTH), tls =
# TLS_SESSION only, none = no TLS session (plain, or a failed handshake).
# A refusal passes when the mount fails (not by timeout) within
# NFS_FAIL_PROMPT_SECONDS, at the expected place (client: the client's
# daemon completed a handshake with a non-zero status; server: the
# server's daemon did; export: every handshake succeeded and nfsd refused
# the mount), nfsd saw the expected transports and both daemons are alive.
# An accepted mount passes when every handshake succeeded on both sides,
# I/O compares equal, kTLS is on both ends and nfsd saw the expected
# transport. After each case every kTLS socket and NFS connection must
# close (reported as closed_seconds, not judged).
#
# Pairings (client side / server side): 1 = NFS_CLIENT_DAEMON /
# NFS_SERVER_DAEMON with NFS_CASES; with NFS_INTEROP=1 and neither side
# the reference: 2 = NFS_CLIENT_DAEMON / /usr/sbin/tlshd, 3 = /usr/sbin/tlshd /
# NFS_SERVER_DAEMON, with NFS_INTEROP_CASES. nfsd stays up across pairings.
# Each accepted handshake is attributed to a daemon from the tracepoints
# (the accepting task's thread group, or its fork ancestry: tlshd forks).
#
# Settings:
#   NFS_CLIENT_DAEMON, NFS_SERVER_DAEMON   [$DAEMON]
#   NFS_CLIENT_DAEMON_ARGS, NFS_SERVER_DAEMON_ARGS, NFS_REF_DAEMON_ARGS
#                          arguments; %c is the policy file written for it  [-s -c %c]
#   NFS_CONF               policy format for daemons other than /usr/sbin/tlshd:
#                          toml, or ini (a tlshd.conf: tlshd-go converts it;
#                          "required" is then skipped)               [toml]
#   NFS_CASES              case names or "all"                        [all]
#   NFS_INTEROP_CASES      [tls mtls wrong_name nocert mtls_on_tls revoked
#                          required required_mtls]; "all": every case (the
#                          scenario then needs SCENARIO_TIMEOUT=600)
#   NFS_INTEROP            [1]
#   NFS_MOUNT_TIMEOUT      seconds for one mount (timeout(1))         [60]
#   NFS_FAIL_PROMPT_SECONDS  a refusal must come faster than this     [8]
#   NFS_IO_KB              size of the file written and read back     [2048]
#   NFS_CLOSE_WAIT         seconds to wait for the connections to close [10]
# RESULT keys: pki_seconds, nfsd_start_seconds, nfsd_grace, pairings;
# per pairing pN_client_daemon, pN_server_daemon, pN_passed ("k/n"); per
# case pN_<case>_{rc,seconds,error,io,io_seconds,ktls_client,ktls_server,
# cipher_client,cipher_server,closed_seconds,client_hs,server_hs,
# nfsd_transports,refused_by,outcome,expected}: *_hs = "accepts/ok/failed
# statuses" of that side's daemon (tracepoints); ktls_* = "TlsCurrTxSw/
# TlsCurrRxSw (+TlsTxSw/+TlsRxSw during the case)"; nfsd_transports =
# "mtls:1"; outcome "skipped" for cases a daemon cannot be configured for.
# Runs under INIT=bash (the default).
# shellcheck source=../lib.sh
. /harness/lib.sh
: "${NFS_CLIENT_DAEMON:=$DAEMON}" "${NFS_SERVER_DAEMON:=$DAEMON}"
: "${NFS_CLIENT_DAEMON_ARGS=-s -c %c}" "${NFS_SERVER_DAEMON_ARGS=-s -c %c}" "${NFS_REF_DAEMON_ARGS=-s -c %c}"
: "${NFS_CONF:=toml}" "${NFS_CASES:=all}" "${NFS_INTEROP:=1}"
: "${NFS_INTEROP_CASES:=tls mtls wrong_name nocert mtls_on_tls revoked required required_mtls}"
: "${NFS_MOUNT_TIMEOUT:=60}" "${NFS_FAIL_PROMPT_SECONDS:=8}" "${NFS_IO_KB:=2048}" "${NFS_CLOSE_WAIT:=10}"
SRV_NS=nfssrv CLI_NS=nfscli SRV_ADDR=10.99.0.1 CLI_ADDR=10.99.0.2 SRV_NAME=nfs-server
PKI=/tmp/nfs/pki CONF=/tmp/nfs/conf MNT=/mnt/nfs
ALL_CASES="tls mtls by_ip plain wrong_name nocert mtls_on_tls revoked nocert_cfg healthy required required_mtls"
# case -> client-identity server-policy xprtsec export host expect layer transport
#   layer: where a refusal must happen: client (the client's daemon fails its
#   handshake), server (the server's daemon fails its handshake), export
#   (every handshake succeeds, nfsd refuses the mount); transport: what nfsd
#   made of the connections (flags of its svc_xprt events): mtls
#   (TLS_SESSION|PEER_AUTH), tls (TLS_SESSION), none (no TLS session)
declare -A CASE=(
	[tls]="good std tls /srv/tls $SRV_NAME ok - tls"
	[mtls]="good std mtls /srv/mtls $SRV_NAME ok - mtls"
	[by_ip]="good std tls /srv/tls $SRV_ADDR ok - tls"
	[plain]="good std none /srv/tls $SRV_NAME refused export none"
	[wrong_name]="good std tls /srv/tls nfs-wrongname refused client none"
	[nocert]="good std tls /srv/mtls $SRV_NAME refused export tls"
	[mtls_on_tls]="good std mtls /srv/tls $SRV_NAME refused export mtls"
	[revoked]="revoked std mtls /srv/mtls $SRV_NAME refused server none"
	[nocert_cfg]="none std mtls /srv/mtls $SRV_NAME refused client none"
	[healthy]="good std mtls /srv/mtls $SRV_NAME ok - mtls"
	[required]="good required tls /srv/tls $SRV_NAME refused server none"
	[required_mtls]="good required mtls /srv/mtls $SRV_NAME ok - mtls"
)
declare -A NSPID=()

command -v rpc.nfsd >/dev/null && command -v mount.nfs4 >/dev/null && command -v openssl >/dev/null ||
	die "nfs-kernel-server, nfs-common and openssl are needed in the root image (run.sh BASE_PKGS)"

# shellcheck disable=SC2317   # called by the EXIT trap
cleanup() {
	local n
	grep -q " $MNT " /proc/mounts && { timeout 10 umount "$MNT" 2>/dev/null || umount -f -l "$MNT"; }
	nfs_server_stop
	for n in nfscli nfssrv; do daemon_stop "$n"; done
	for n in "${NSPID[@]}"; do kill "$n" 2>/dev/null; done
	trace_tgid 0
	[ -e /etc/hosts.nfs-tls ] && mv /etc/hosts.nfs-tls /etc/hosts
	ip netns del "$SRV_NS" 2>/dev/null
	ip netns del "$CLI_NS" 2>/dev/null
	rm -rf /srv/tls /srv/mtls
}
trap cleanup EXIT

# ------------------------------------------------------------- the PKI ---
t0=${EPOCHREALTIME/./}
pki_ca "$PKI" "tlshd-go NFS test CA" &&
	pki_leaf "$PKI" server "$SRV_NAME" "DNS:$SRV_NAME,IP:$SRV_ADDR" serverAuth 4097 &&
	pki_leaf "$PKI" client nfs-client "DNS:nfs-client,IP:$CLI_ADDR" clientAuth 4098 &&
	pki_leaf "$PKI" revoked nfs-client-revoked "DNS:nfs-client,IP:$CLI_ADDR" clientAuth 4099 &&
	pki_revoke "$PKI" revoked || die "openssl: test PKI"
result pki_seconds "$(elapsed "$t0")"
say "PKI in $PKI: $(openssl crl -in "$PKI/crl.pem" -noout -text | grep -c 'Serial Number') revoked serial(s) in crl.pem"

# Policies: <side>-<variant>.toml and .ini.
mkdir -p "$CONF"
toml_server() {   # client_certificate
	cat <<-EOF
	[global]
	log_level = "info"

	[server.x509]
	trust_anchors = ["$PKI/ca.pem"]
	certificate = "$PKI/server.pem"
	private_key = "$PKI/server.key"
	crl = ["$PKI/crl.pem"]
	require_eku = true
	client_certificate = "$1"
	EOF
}
toml_client() {   # certificate-name or ""
	printf '[global]\nlog_level = "info"\n\n[client.x509]\ntrust_anchors = ["%s"]\nrequire_eku = true\n' "$PKI/ca.pem"
	[ -z "$1" ] || printf 'certificate = "%s"\nprivate_key = "%s"\n' "$PKI/$1.pem" "$PKI/$1.key"
}
ini() {   # section truststore [certificate-name] [crl]
	printf '[debug]\nloglevel=1\ntls=0\nnl=0\n\n[authenticate]\n\n[authenticate.%s]\nx509.truststore=%s\n' "$1" "$2"
	[ -z "${3:-}" ] || printf 'x509.certificate=%s\nx509.private_key=%s\n' "$PKI/$3.pem" "$PKI/$3.key"
	[ -z "${4:-}" ] || printf 'x509.crl=%s\n' "$4"
}
toml_server optional >"$CONF/server-std.toml"
toml_server required >"$CONF/server-required.toml"
toml_client client >"$CONF/client-good.toml"
toml_client revoked >"$CONF/client-revoked.toml"
toml_client "" >"$CONF/client-none.toml"
ini server "$PKI/ca.pem" server "$PKI/crl.pem" >"$CONF/server-std.ini"
ini client "$PKI/ca.pem" client >"$CONF/client-good.ini"
ini client "$PKI/ca.pem" revoked >"$CONF/client-revoked.ini"
ini client "$PKI/ca.pem" >"$CONF/client-none.ini"

# ------------------------------------------------------------- network ---
cp /etc/hosts /etc/hosts.nfs-tls
printf '127.0.0.1 localhost tlshd-vm\n%s %s nfs-wrongname\n%s nfs-client\n' "$SRV_ADDR" "$SRV_NAME" "$CLI_ADDR" >/etc/hosts
ip netns add "$SRV_NS" && ip netns add "$CLI_NS" || die "ip netns add"
ip link add veth-s type veth peer name veth-c && ip link set veth-s netns "$SRV_NS" &&
	ip link set veth-c netns "$CLI_NS" || die "veth"
ip -n "$SRV_NS" addr add "$SRV_ADDR/24" dev veth-s && ip -n "$SRV_NS" link set veth-s up &&
	ip -n "$SRV_NS" link set lo up || die "server netns address"
ip -n "$CLI_NS" addr add "$CLI_ADDR/24" dev veth-c && ip -n "$CLI_NS" link set veth-c up &&
	ip -n "$CLI_NS" link set lo up || die "client netns address"
# One process per netns to read its /proc/<pid>/net files through, whatever
# the daemons do.
for ns in "$SRV_NS" "$CLI_NS"; do
	setsid nsenter "--net=/run/netns/$ns" sleep 100000 </dev/null >/dev/null 2>&1 &
	NSPID[$ns]=$!
done

# ----------------------------------------------------------------- nfsd ---
mkdir -p /srv/tls /srv/mtls "$MNT"
echo "made on the server" >/srv/tls/server-file
echo "made on the server" >/srv/mtls/server-file
cat >/tmp/nfs/exports <<-'EOF'
/srv/tls   *(rw,sync,no_subtree_check,no_root_squash,fsid=1,xprtsec=tls)
/srv/mtls  *(rw,sync,no_subtree_check,no_root_squash,fsid=2,xprtsec=mtls)
EOF
t0=${EPOCHREALTIME/./}
nfs_server_start "$SRV_NS" /tmp/nfs/exports || finish
result nfsd_start_seconds "$(elapsed "$t0")"
result nfsd_grace "$NFSD_GRACE"
[ "$NFSD_GRACE" = Y ] || say "nfsd still in its grace period: the first writes may wait"
say "nfsd in $SRV_NS: versions $(</proc/fs/nfsd/versions), threads $(</proc/fs/nfsd/threads)," \
	"listening: $(nsenter "--net=/run/netns/$SRV_NS" ss -Hltn | awk '{print $4}' | paste -sd' ')"
say "exports: $(nsenter "--net=/run/netns/$SRV_NS" exportfs -v | paste -sd' ' | tr -s '\t ' ' ')"

# Tracing: net/handshake events, forks (which daemon accepted), the
# accepting task's thread group, and nfsd's TLS transport events.
trace_start
trace_tgid 1
for e in "$TR"/events/sunrpc/svc_tls_*/enable "$TR"/events/sunrpc/svc_xprt_{accept,close,detach,free}/enable \
	"$TR"/events/sunrpc/rpc_tls_*/enable; do
	[ -e "$e" ] && echo 1 >"$e"
done

# -------------------------------------------------------------- helpers ---
conf_format() { if is_ref "$1"; then echo ini; else echo "$NFS_CONF"; fi; }   # bin
# kTLS counters of a netns: -> KT_CTX KT_CRX (sockets now) KT_TX KT_RX (ever)
ktls_of() {   # netns
	local l
	KT_CTX=0 KT_CRX=0 KT_TX=0 KT_RX=0
	slurp "/proc/${NSPID[$1]}/net/tls_stat"
	for l in "${SLURP[@]}"; do
		case $l in
		TlsCurrTxSw*) KT_CTX=${l##*[[:space:]]} ;; TlsCurrRxSw*) KT_CRX=${l##*[[:space:]]} ;;
		TlsTxSw*) KT_TX=${l##*[[:space:]]} ;; TlsRxSw*) KT_RX=${l##*[[:space:]]} ;;
		esac
	done
}
# TCP connections to or from port 2049 in a netns, neither listening nor in
# TIME_WAIT/CLOSE (IPv4: the test network): -> NCONN
nfs_conns() {   # netns
	local l f
	NCONN=0
	slurp "/proc/${NSPID[$1]}/net/tcp"
	for l in "${SLURP[@]:1}"; do
		read -r -a f <<<"$l"   # sl local_address rem_address st ...
		[[ ${f[1]} == *:0801 || ${f[2]} == *:0801 ]] || continue
		case ${f[3]} in 0A | 06 | 07) ;; *) NCONN=$((NCONN + 1)) ;; esac
	done
}
# What nfsd made of each client connection of a saved trace: the union of
# the xprt flags of its svc_* events, judged once it was closed (detach):
# mtls (TLS_SESSION and PEER_AUTH), tls (TLS_SESSION), none; "open" if not
# closed yet. -> "mtls:1" or "none:9,open:1" (sorted)
nfsd_transports() {   # trace-file
	awk '/ svc_(xprt|tls)_[a-z_]*: / && / client=/ {
		c = ""; f = ""
		if (match($0, / client=[^ ]+/)) c = substr($0, RSTART + 8, RLENGTH - 8)
		if (match($0, / flags=[^ ]+/)) f = substr($0, RSTART + 7, RLENGTH - 7)
		fl[c] = fl[c] "|" f
		if ($0 ~ / svc_xprt_(detach|close|free): /) done[c] = 1
	}
	END {
		for (c in fl) {
			l = "open"
			if (c in done) l = (fl[c] ~ /TLS_SESSION/) ? ((fl[c] ~ /PEER_AUTH/) ? "mtls" : "tls") : "none"
			n[l]++
		}
		for (l in n) print l ":" n[l]
	}' "$1" | sort | paste -sd, -
}
lines_of() { local n=0; [ -f "$1" ] && n=$(wc -l <"$1"); echo "$n"; }
declare -A LOGPOS=()
# (Re)start a side's daemon with a policy variant, unless it already runs it.
declare -A CUR=()
use_daemon() {   # side(nfscli|nfssrv) variant
	local side=$1 v=$2 bin args conf ns
	if [ "$side" = nfscli ]; then bin=$CLI_BIN args=$CLI_ARGS ns=$CLI_NS conf=client
	else bin=$SRV_BIN args=$SRV_ARGS ns=$SRV_NS conf=server; fi
	[ "${CUR[$side]:-}" = "$v" ] && daemon_alive "$side" && return 0
	conf=$CONF/$conf-$v.$(conf_format "$bin")
	[ -e "$conf" ] || { fail "no policy $conf"; return 1; }
	daemon_stop "$side"
	unset "CUR[$side]"
	daemon_start "$side" "$bin" "${args//%c/$conf}" "$ns" || return 1
	CUR[$side]=$v
}
both_alive() {
	local ok=0
	daemon_alive nfscli || { fail "$K: client-side daemon died"; ok=1; }
	daemon_alive nfssrv || { fail "$K: server-side daemon died"; ok=1; }
	return $ok
}
# Write, compare on the server, drop caches, read back through NFS.
nfs_io() {   # export -> IO
	local file=$MNT/data-$K s=$1/data-$K v=""
	head -c $((NFS_IO_KB << 10)) /dev/urandom >/tmp/nfs/pattern
	if ! timeout 60 cp /tmp/nfs/pattern "$file" || ! timeout 60 sync "$file"; then IO=write-failed; return 1; fi
	cmp -s /tmp/nfs/pattern "$s" || { IO=server-copy-differs; return 1; }
	echo 3 >/proc/sys/vm/drop_caches
	timeout 60 cmp -s /tmp/nfs/pattern "$file" || { IO=read-back-differs; return 1; }
	read -r v 2>/dev/null <"$MNT/server-file"
	[ "$v" = "made on the server" ] || { IO=server-file-unreadable; return 1; }
	rm -f "$file"
	IO=ok
}
# Handshakes of the case, per daemon, as "accepts/ok/failed statuses".
hs_summary() {   # name
	local s="${TRD[$1_accepts]}/${TRD[$1_ok]}/${TRD[$1_failed]}"
	[ -z "${TRD[$1_statuses]}" ] || s+=" ${TRD[$1_statuses]}"
	[ "${TRD[$1_cancel]}" = 0 ] || s+=" cancelled:${TRD[$1_cancel]}"
	echo "$s"
}

run_case() {   # case expected(pass|fail|any)
	local c=$1 want=$2 id pol sec exp host expect layer xprt opts rc t0 secs dm
	local ok=1 out="" by err x0 x1 rx0 rx1 sx0 sx1 srx0 srx1 tr
	K=${P}_$c
	read -r id pol sec exp host expect layer xprt <<<"${CASE[$c]}"
	echo
	x0=$expect
	[ "$layer" = - ] || x0+=" by the $layer"
	x0+=", nfsd transport $xprt"
	say "=== $P $c: client certificate $id, server policy $pol, xprtsec=$sec $host:$exp: expect $x0"
	if [ "$pol" = required ] && [ "$(conf_format "$SRV_BIN")" != toml ]; then
		result "${K}_outcome" skipped
		say "$c: skipped (a tlshd.conf cannot require client certificates)"
		return 0
	fi
	use_daemon nfssrv "$pol" && use_daemon nfscli "$id" || { fail "$K: daemons"; return 1; }
	[ "$c" = healthy ] && { [ "${DPID[nfssrv]}" = "$SRV_PID0" ] && x0=yes || x0=no; result "${K}_server_same_process" "$x0"; }
	opts=vers=4.2,retry=0
	[ "$sec" = none ] || opts+=,xprtsec=$sec
	LOGPOS[nfscli]=$(lines_of "${DLOG[nfscli]}") LOGPOS[nfssrv]=$(lines_of "${DLOG[nfssrv]}")
	dm=$(dmesg | wc -l)
	ktls_of "$CLI_NS"; x0=$KT_TX rx0=$KT_RX
	ktls_of "$SRV_NS"; sx0=$KT_TX srx0=$KT_RX
	trace_clear
	t0=${EPOCHREALTIME/./}
	nsenter "--net=/run/netns/$CLI_NS" timeout "$NFS_MOUNT_TIMEOUT" mount -t nfs4 -o "$opts" "$host:$exp" "$MNT" >/tmp/nfs/mount.log 2>&1
	rc=$?
	secs=$(elapsed "$t0")
	err=$(paste -sd' ' /tmp/nfs/mount.log)
	result "${K}_rc" "$rc"
	result "${K}_seconds" "$secs"
	[ -z "$err" ] || result "${K}_error" "$err"
	say "$c: mount -o $opts rc $rc after $secs s${err:+: $err}"
	if ((rc == 0)); then
		say "$c: $(grep " $MNT " /proc/mounts)"
		ktls_of "$CLI_NS"; x1=$KT_TX rx1=$KT_RX
		result "${K}_ktls_client" "$KT_CTX/$KT_CRX (+$((x1 - x0))/+$((rx1 - rx0)))"
		((KT_CTX >= 1 && KT_CRX >= 1 && x1 > x0 && rx1 > rx0)) || { out+=" no-ktls-client"; ok=0; }
		ktls_of "$SRV_NS"; sx1=$KT_TX srx1=$KT_RX
		result "${K}_ktls_server" "$KT_CTX/$KT_CRX (+$((sx1 - sx0))/+$((srx1 - srx0)))"
		((KT_CTX >= 1 && KT_CRX >= 1 && sx1 > sx0 && srx1 > srx0)) || { out+=" no-ktls-server"; ok=0; }
		result "${K}_cipher_client" "$(ktls_ciphers_ns "$CLI_NS")"
		result "${K}_cipher_server" "$(ktls_ciphers_ns "$SRV_NS")"
		t0=${EPOCHREALTIME/./}
		nfs_io "$exp" || { ok=0; out+=" io:$IO"; }
		result "${K}_io" "$IO"
		result "${K}_io_seconds" "$(elapsed "$t0")"
		if ! timeout 30 umount "$MNT"; then
			umount -f -l "$MNT"
			fail "$K: umount"
		fi
	fi
	# The transports close (after the unmount, or the refusal): no kTLS
	# socket and no NFS connection left in either namespace.
	t0=${EPOCHREALTIME/./}
	while :; do
		ktls_of "$CLI_NS"; x0=$((KT_CTX + KT_CRX))
		ktls_of "$SRV_NS"; x0=$((x0 + KT_CTX + KT_CRX))
		nfs_conns "$CLI_NS"; x1=$NCONN
		nfs_conns "$SRV_NS"; x1=$((x1 + NCONN))
		((x0 + x1 == 0)) && break
		((${EPOCHREALTIME/./} - t0 > NFS_CLOSE_WAIT * 1000000)) && break
		nap 0.05
	done
	if ((x0 + x1 == 0)); then result "${K}_closed_seconds" "$(elapsed "$t0")"
	else result "${K}_closed_seconds" "open:ktls=$x0,tcp=$x1"; fi
	trace_save "/tmp/nfs/trace-$K"
	trace_by_daemon "/tmp/nfs/trace-$K" "cli:${DPID[nfscli]},srv:${DPID[nfssrv]}"
	result "${K}_client_hs" "$(hs_summary cli)"
	result "${K}_server_hs" "$(hs_summary srv)"
	((TRD[other_accepts] + TRD[unaccepted] == 0)) || say "$c: accepts by other processes ${TRD[other_accepts]}, never accepted ${TRD[unaccepted]}"
	tr=$(nfsd_transports "/tmp/nfs/trace-$K")
	result "${K}_nfsd_transports" "$tr"
	grep -E 'handshake_(complete|cancel):|svc_tls|rpc_tls|svc_xprt_(accept|detach)' "/tmp/nfs/trace-$K" |
		sed 's/^ */    trace: /' | head -n 12
	if ((TRD[cli_failed] + TRD[srv_failed] + TRD[cli_cancel] + TRD[srv_cancel] + TRD[unaccepted] > 0)); then
		by=handshake
		((TRD[cli_failed])) && by+=" client:${TRD[cli_statuses]}"
		((TRD[srv_failed])) && by+=" server:${TRD[srv_statuses]}"
	elif ((rc != 0)); then by="export"
	else by=none; fi
	[ "$expect" = refused ] && result "${K}_refused_by" "$by"
	# Every connection nfsd saw in this case got the expected treatment.
	[[ $tr =~ ^$xprt:[0-9]+$ ]] || { ok=0; out+=" nfsd-transports:${tr:-none-seen}"; }
	if [ "$expect" = ok ]; then
		((rc == 0)) || { ok=0; out+=" mount-rc:$rc"; }
		[ "$by" = none ] || { ok=0; out+=" refused-by:$by"; }
		((TRD[cli_ok] >= 1 && TRD[srv_ok] >= 1)) || { ok=0; out+=" handshakes"; }
	elif ((rc == 0)); then
		ok=0; out+=" mounted"
	else
		((rc == 124)) && { ok=0; out+=" mount-timed-out"; }
		case $layer in
		export) [ "$by" = export ] ;;
		client) ((TRD[cli_failed] > 0)) ;;
		server) ((TRD[srv_failed] > 0)) ;;
		esac || { ok=0; out+=" refused-by:$by"; }
		awk -v s="$secs" -v m="$NFS_FAIL_PROMPT_SECONDS" 'BEGIN { exit !(s < m) }' || { ok=0; out+=" slow:${secs}s"; }
	fi
	both_alive || { ok=0; out+=" daemon-died"; }
	if [ "$DAEMON_LOG_CONSOLE" != 1 ]; then   # else already on the console
		tail -n +"$((LOGPOS[nfscli] + 1))" "${DLOG[nfscli]}" | grep -E 'msg=handshake|Handshake|handshake|fail|error|certificate' |
			head -n 6 | sed 's/^/    client daemon: /'
		tail -n +"$((LOGPOS[nfssrv] + 1))" "${DLOG[nfssrv]}" | grep -E 'msg=handshake|Handshake|handshake|fail|error|certificate' |
			head -n 6 | sed 's/^/    server daemon: /'
	fi
	dmesg | tail -n +"$((dm + 1))" | grep -iE 'nfs|rpc|tls|handshake' | tail -n 6 | sed 's/^/    kernel: /'
	if ((ok)); then x0=pass; else x0=fail; say "$c: did not go as it must:$out"; fi
	judge "$K" "$want" "$x0"
	((ok)) && PASSED=$((PASSED + 1))
	RAN=$((RAN + 1))
}

pairing() {   # n client-bin client-args server-bin server-args cases
	local c want
	P=p$1 CLI_BIN=$2 CLI_ARGS=$3 SRV_BIN=$4 SRV_ARGS=$5 PASSED=0 RAN=0
	CUR=()
	echo
	say "======== pairing $1: client side $CLI_BIN ($(conf_format "$CLI_BIN")), server side $SRV_BIN ($(conf_format "$SRV_BIN"))"
	result "${P}_client_daemon" "$CLI_BIN"
	result "${P}_server_daemon" "$SRV_BIN"
	use_daemon nfssrv std && use_daemon nfscli good || { fail "pairing $1: daemons do not start"; return 1; }
	SRV_PID0=${DPID[nfssrv]}
	[ "$6" = all ] && set -- "$1" "$2" "$3" "$4" "$5" "$ALL_CASES"
	for c in $ALL_CASES; do
		[[ " $6 " == *" $c "* ]] || continue
		want=pass
		[ "$c" = revoked ] && want=$(expectation "${EXPECT_NFS_REVOKED:-auto}" "$SRV_BIN")
		run_case "$c" "$want"
	done
	result "${P}_passed" "$PASSED/$RAN"
	daemon_stop nfscli
	daemon_stop nfssrv
}

n=1
pairing 1 "$NFS_CLIENT_DAEMON" "$NFS_CLIENT_DAEMON_ARGS" "$NFS_SERVER_DAEMON" "$NFS_SERVER_DAEMON_ARGS" "$NFS_CASES"
if [ "$NFS_INTEROP" = 1 ] && ! is_ref "$NFS_CLIENT_DAEMON" && ! is_ref "$NFS_SERVER_DAEMON"; then
	pairing 2 "$NFS_CLIENT_DAEMON" "$NFS_CLIENT_DAEMON_ARGS" "$REF_DAEMON" "$NFS_REF_DAEMON_ARGS" "$NFS_INTEROP_CASES"
	pairing 3 "$REF_DAEMON" "$NFS_REF_DAEMON_ARGS" "$NFS_SERVER_DAEMON" "$NFS_SERVER_DAEMON_ARGS" "$NFS_INTEROP_CASES"
	n=3
fi
result pairings "$n"
finish
