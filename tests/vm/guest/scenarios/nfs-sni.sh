#!/bin/bash
# nfs-sni: an NFS server named only by its address, and the x509 client's
# reverse-DNS fallback (issue 12; handshake/sni.go). nfsd in netns nfssrv
# (10.99.0.1 and 10.99.0.3), the NFS client in netns nfscli (10.99.0.2), a
# tlshd-go on each side, as in nfs-tls. The server's certificate names
# nfs-rdns.test and nfs-named.test and has NO IP SAN, so a client that
# verifies the server against its address alone must refuse it. A mount by
# address sends the address as PEERNAME; tlshd-go then asks reverse DNS
# for a name, sends it as SNI and verifies the certificate against it.
#
# Cases (RESULT keys <case>_*), each with a fresh client-side daemon (Go's
# resolver caches /etc/hosts and resolv.conf for 5 s):
#   rdns        /etc/hosts: 10.99.0.1 nfs-rdns.test. mount 10.99.0.1:/srv/tls
#               mounts: handshakes ok on both sides, kTLS on both sides,
#               I/O compares, nfsd saw a TLS transport, and the ClientHello
#               on the wire carries SNI nfs-rdns.test.
#   rdns_wrong  /etc/hosts: 10.99.0.1 nfs-other.test (not in the
#               certificate): SNI nfs-other.test on the wire, the client's
#               daemon refuses the server (so the name is verified, not
#               only sent).
#   rdns_off    as rdns, client policy [client.x509] reverse_dns = false:
#               no SNI on the wire, the client's daemon refuses the server
#               (verified against 10.99.0.1, which the certificate lacks).
#   stall       no hosts entry for 10.99.0.1; resolv.conf names 10.99.0.53,
#               a UDP port in the server netns that reads queries and never
#               answers. mount 10.99.0.1:/srv/tls in the background, and,
#               once the client's daemon has accepted that request, mount
#               nfs-named.test:/srv/tls (10.99.0.3; PEERNAME is a name, no
#               lookup). Judged from the kernel and the wire:
#               - the stalled handshake (the first the client's daemon
#                 accepted) ends, refused, no later than BOUND +
#                 NFS_SNI_SLACK after its ACCEPT and no sooner than 0.9 x
#                 BOUND (it did wait for the resolver); BOUND is what
#                 handshake/sni.go computes, min(2 s, deadline/4), read
#                 from the daemon's log line, which must say the lookup
#                 timed out and name the address;
#               - the sink received a PTR query for 1.0.99.10.in-addr.arpa;
#               - the named handshake completed ok BEFORE the stalled one
#                 ended, within BOUND/2 of its ACCEPT (not delayed), and
#                 that mount's I/O compares;
#               - no SNI on the stalled ClientHello, SNI nfs-named.test on
#                 the other.
# A refusal passes when the mount fails (not by timeout) within
# NFS_FAIL_PROMPT_SECONDS and the client's daemon completed a handshake
# with a non-zero status; both daemons must be alive after every case.
#
# Settings: NFS_SNI_CASES [rdns rdns_wrong rdns_off stall], NFS_MOUNT_TIMEOUT
# [60], NFS_FAIL_PROMPT_SECONDS [8], NFS_SNI_SLACK seconds [1.0],
# NFS_IO_KB [512]. tlshd-go only (DAEMON): /usr/sbin/tlshd 1.0.0 has no
# reverse-DNS fallback. Runs under INIT=bash.
# shellcheck source=../lib.sh
. /harness/lib.sh
: "${NFS_SNI_CASES:=rdns rdns_wrong rdns_off stall}" "${NFS_MOUNT_TIMEOUT:=60}"
: "${NFS_FAIL_PROMPT_SECONDS:=8}" "${NFS_SNI_SLACK:=1.0}" "${NFS_IO_KB:=512}"
SRV_NS=nfssrv CLI_NS=nfscli SRV_ADDR=10.99.0.1 SRV_ADDR2=10.99.0.3 CLI_ADDR=10.99.0.2 DNS_ADDR=10.99.0.53
PKI=/tmp/nfs/pki CONF=/tmp/nfs/conf MNT=/mnt/nfs MNT2=/mnt/nfs2
declare -A NSPID=()

command -v rpc.nfsd >/dev/null && command -v mount.nfs4 >/dev/null && command -v openssl >/dev/null ||
	die "nfs-kernel-server, nfs-common and openssl are needed in the root image (run.sh BASE_PKGS)"
is_ref "$DAEMON" && die "nfs-sni tests tlshd-go's reverse-DNS fallback; $DAEMON has none"

# shellcheck disable=SC2317   # called by the EXIT trap
cleanup() {
	local n m
	for m in "$MNT" "$MNT2"; do
		grep -q " $m " /proc/mounts && { timeout 10 umount "$m" 2>/dev/null || umount -f -l "$m"; }
	done
	[ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null
	[ -n "${WIRE_PID:-}" ] && kill "$WIRE_PID" 2>/dev/null
	nfs_server_stop
	for n in nfscli nfssrv; do daemon_stop "$n"; done
	for n in "${NSPID[@]}"; do kill "$n" 2>/dev/null; done
	trace_tgid 0
	[ -e /etc/hosts.nfs-sni ] && mv /etc/hosts.nfs-sni /etc/hosts
	[ -e /etc/resolv.conf.nfs-sni ] && mv /etc/resolv.conf.nfs-sni /etc/resolv.conf
	ip netns del "$SRV_NS" 2>/dev/null
	ip netns del "$CLI_NS" 2>/dev/null
	rm -rf /srv/tls
}
trap cleanup EXIT

# ------------------------------------------------------ PKI and policies ---
pki_ca "$PKI" "tlshd-go NFS SNI test CA" &&
	pki_leaf "$PKI" server nfs-rdns.test "DNS:nfs-rdns.test,DNS:nfs-named.test" serverAuth 4201 ||
	die "openssl: test PKI"
say "server certificate: $(openssl x509 -in "$PKI/server.pem" -noout -ext subjectAltName | tail -n +2 | tr -s ' ')"
mkdir -p "$CONF"
printf '[global]\nlog_level = "info"\n\n[server.x509]\ntrust_anchors = ["%s"]\ncertificate = "%s"\nprivate_key = "%s"\n' \
	"$PKI/ca.pem" "$PKI/server.pem" "$PKI/server.key" >"$CONF/server.toml"
client_conf() {   # extra [client.x509] line
	printf '[global]\nlog_level = "info"\n\n[client.x509]\ntrust_anchors = ["%s"]\n%s\n' "$PKI/ca.pem" "$1"
}
client_conf "" >"$CONF/client-on.toml"
client_conf "reverse_dns = false" >"$CONF/client-off.toml"

# ------------------------------------------------------------- network ---
cp /etc/hosts /etc/hosts.nfs-sni
cp /etc/resolv.conf /etc/resolv.conf.nfs-sni 2>/dev/null || : >/etc/resolv.conf.nfs-sni
hosts() {   # extra lines
	printf '127.0.0.1 localhost tlshd-vm\n%s nfs-named.test\n%s nfs-client\n%s' "$SRV_ADDR2" "$CLI_ADDR" "$1" >/etc/hosts
}
ip netns add "$SRV_NS" && ip netns add "$CLI_NS" || die "ip netns add"
ip link add veth-s type veth peer name veth-c && ip link set veth-s netns "$SRV_NS" &&
	ip link set veth-c netns "$CLI_NS" || die "veth"
# A large MTU keeps each ClientHello in one frame for tlswire.pl.
for x in "$SRV_NS veth-s $SRV_ADDR $SRV_ADDR2 $DNS_ADDR" "$CLI_NS veth-c $CLI_ADDR"; do
	read -r ns dev a1 a2 a3 <<<"$x"
	for a in $a1 $a2 $a3; do ip -n "$ns" addr add "$a/24" dev "$dev" || die "address $a"; done
	ip -n "$ns" link set "$dev" mtu 9000 && ip -n "$ns" link set "$dev" up && ip -n "$ns" link set lo up || die "$dev up"
done
WIRE_IF=$(ip -n "$SRV_NS" -o link show veth-s | cut -d: -f1)   # its index: sysfs shows the root netns
for ns in "$SRV_NS" "$CLI_NS"; do
	setsid nsenter "--net=/run/netns/$ns" sleep 100000 </dev/null >/dev/null 2>&1 &
	NSPID[$ns]=$!
done

# A DNS server that never answers: it logs each query's name and drops it.
rm -f /tmp/nfs/sink.log /tmp/nfs/sink.ready
# shellcheck disable=SC2016
setsid nsenter "--net=/run/netns/$SRV_NS" perl -e '
	my ($addr, $out, $ready) = @ARGV;
	socket(my $s, 2, 2, 0) or die "sink: socket: $!\n";   # AF_INET, SOCK_DGRAM
	bind($s, pack("S n a4 x8", 2, 53, pack("C4", split /\./, $addr))) or die "sink: bind: $!\n";
	open(my $o, ">", $out) or die; select($o); $| = 1;
	open(my $r, ">", $ready) or die; close $r;
	while (1) {
		defined(recv($s, my $b, 4096, 0)) or next;
		my ($i, @l) = (12);
		while ($i < length $b) { my $n = ord substr($b, $i, 1); last unless $n; push @l, substr($b, $i + 1, $n); $i += 1 + $n }
		printf "QUERY %s type=%d\n", join(".", @l), unpack("n", substr($b, $i + 1, 2));
	}' "$DNS_ADDR" /tmp/nfs/sink.log /tmp/nfs/sink.ready </dev/null >/tmp/nfs/sink.err 2>&1 &
SINK_PID=$!
for ((i = 0; i < 250; i++)); do [ -e /tmp/nfs/sink.ready ] && break; nap 0.02; done
[ -e /tmp/nfs/sink.ready ] || die "DNS sink did not start: $(cat /tmp/nfs/sink.err)"

# ----------------------------------------------------------------- nfsd ---
mkdir -p /srv/tls "$MNT" "$MNT2"
echo "made on the server" >/srv/tls/server-file
printf '/srv/tls *(rw,sync,no_subtree_check,no_root_squash,fsid=1,xprtsec=tls)\n' >/tmp/nfs/exports
nfs_server_start "$SRV_NS" /tmp/nfs/exports || finish
[ "$NFSD_GRACE" = Y ] || say "nfsd still in its grace period: the first writes may wait"
daemon_start nfssrv "$DAEMON" "-s -c $CONF/server.toml" "$SRV_NS" || finish
trace_start
trace_tgid 1

# -------------------------------------------------------------- helpers ---
ktls_now() {   # netns -> KT (TlsCurrTxSw + TlsCurrRxSw)
	local l
	KT=0
	slurp "/proc/${NSPID[$1]}/net/tls_stat"
	for l in "${SLURP[@]}"; do
		case $l in TlsCurrTxSw* | TlsCurrRxSw*) KT=$((KT + ${l##*[[:space:]]})) ;; esac
	done
}
wire_on() {
	rm -f /tmp/nfs/wire.log /tmp/nfs/wire.ready
	setsid nsenter "--net=/run/netns/$SRV_NS" perl /harness/tlswire.pl 2049 /tmp/nfs/wire.log /tmp/nfs/wire.ready "$WIRE_IF" \
		</dev/null 2>/tmp/nfs/wire.err &
	WIRE_PID=$!
	for ((i = 0; i < 250; i++)); do [ -e /tmp/nfs/wire.ready ] && return 0; nap 0.02; done
	fail "tlswire.pl did not start: $(cat /tmp/nfs/wire.err)"
}
wire_off() {
	nap 0.2
	kill "$WIRE_PID" 2>/dev/null
	wait "$WIRE_PID" 2>/dev/null
	WIRE_PID=""
	touch /tmp/nfs/wire.log
	sed 's/^/    wire: /' /tmp/nfs/wire.log
}
# SNI values of the ClientHellos on the wire, sorted, unique: -> stdout
wire_sni() { awk '/^CH / { if (match($0, / sni="[^"]*"/)) print substr($0, RSTART + 6, RLENGTH - 7) }' /tmp/nfs/wire.log | sort -u | paste -sd, -; }
# The client daemon's requests in a saved trace, in ACCEPT order:
# "accept_ts complete_ts status" per line (complete_ts "-" if none).
client_requests() {   # file pid
	awk -v pid="$2" '
	{
		ev = ""
		for (i = 2; i <= NF; i++) if ($i ~ /^[a-z_]+:$/) { ev = substr($i, 1, length($i) - 1); break }
		if (ev != "handshake_cmd_accept" && ev != "handshake_complete") next
		ts = $(i - 1); sub(/:$/, "", ts)
		req = ""; st = ""
		for (j = i + 1; j <= NF; j++) { if ($j ~ /^req=/) req = substr($j, 5); if ($j ~ /^status=/) st = substr($j, 8) }
		tgid = ""; if (match($0, /\( *[0-9]+\)/)) { tgid = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", tgid) }
		if (ev == "handshake_cmd_accept" && tgid == pid) { order[++n] = req; acc[req] = ts }
		if (ev == "handshake_complete" && (req in acc) && !(req in done)) { done[req] = ts; stat[req] = st }
	}
	END { for (k = 1; k <= n; k++) { r = order[k]; print acc[r], (r in done) ? done[r] : "-", (r in done) ? stat[r] : "-" } }' "$1"
}
fgt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }   # a > b
# Go duration ("2s", "1.5s", "750ms") -> seconds
dur_s() { awk -v d="$1" 'BEGIN { if (d ~ /ms$/) print substr(d, 1, length(d) - 2) / 1000; else if (d ~ /s$/) print substr(d, 1, length(d) - 1) + 0; else print -1 }'; }
nfs_io() {   # mountpoint -> IO
	head -c $((NFS_IO_KB << 10)) /dev/urandom >/tmp/nfs/pattern
	if ! timeout 60 cp /tmp/nfs/pattern "$1/data" || ! timeout 60 sync "$1/data"; then IO=write-failed; return 1; fi
	cmp -s /tmp/nfs/pattern /srv/tls/data || { IO=server-copy-differs; return 1; }
	echo 3 >/proc/sys/vm/drop_caches
	timeout 60 cmp -s /tmp/nfs/pattern "$1/data" || { IO=read-back-differs; return 1; }
	rm -f "$1/data"
	IO=ok
}
# After a mount (MRC): its I/O compared and the unmount, or the failure.
io_umount() {   # key mountpoint failure-word
	if ((MRC != 0)); then
		OK=0 OUT+=" $3:$MRC"
		return
	fi
	nfs_io "$2" || { OK=0; OUT+=" io:$IO"; }
	result "$1_io" "$IO"
	timeout 30 umount "$2" || { umount -f -l "$2"; OK=0; OUT+=" umount"; }
}
mount_nfs() {   # spec mountpoint -> MRC MSECS MERR
	local t0=${EPOCHREALTIME/./}
	nsenter "--net=/run/netns/$CLI_NS" timeout "$NFS_MOUNT_TIMEOUT" mount -t nfs4 -o vers=4.2,retry=0,xprtsec=tls \
		"$1" "$2" >"/tmp/nfs/mount-${2##*/}.log" 2>&1
	MRC=$?
	MSECS=$(elapsed "$t0")
	MERR=$(paste -sd' ' "/tmp/nfs/mount-${2##*/}.log")
}
case_start() {   # case hosts-extra policy
	K=$1 OUT="" OK=1
	echo
	say "=== $K"
	hosts "$2"
	daemon_stop nfscli
	daemon_start nfscli "$DAEMON" "-s -c $CONF/client-$3.toml" "$CLI_NS" || { fail "$K: client daemon"; return 1; }
	LOG0=$(wc -l <"${DLOG[nfscli]}")
	: >/tmp/nfs/sink.log
	wire_on
	trace_clear
}
case_end() {   # -> judges K
	local tr=/tmp/nfs/trace-$K
	wire_off
	result "${K}_sni" "$(wire_sni)"
	trace_save "$tr"
	grep -E 'handshake_(cmd_accept|complete):' "$tr" | sed 's/^ */    trace: /' | head -n 8
	tail -n +"$((LOG0 + 1))" "${DLOG[nfscli]}" | grep -iE 'reverse|handshake|certificate' | head -n 6 | sed 's/^/    client daemon: /'
	daemon_alive nfscli && daemon_alive nfssrv || { OK=0; OUT+=" daemon-died"; }
	((OK)) || say "$K: did not go as it must:$OUT"
	judge "$K" pass "$( ((OK)) && echo pass || echo fail)"
}
refused() {   # spec: a prompt refusal by the client's daemon
	mount_nfs "$1" "$MNT"
	result "${K}_rc" "$MRC"
	result "${K}_seconds" "$MSECS"
	say "$K: mount $1 rc $MRC after $MSECS s${MERR:+: $MERR}"
	((MRC == 0)) && { OK=0; OUT+=" mounted"; umount "$MNT"; }
	((MRC == 124)) && { OK=0; OUT+=" mount-timed-out"; }
	fgt "$NFS_FAIL_PROMPT_SECONDS" "$MSECS" || { OK=0; OUT+=" slow:${MSECS}s"; }
}
client_hs() {   # -> CH_OK CH_FAILED (the client daemon's handshakes in this case)
	local a c s
	CH_OK=0 CH_FAILED=0
	while read -r a c s; do
		[ "$s" = 0 ] && CH_OK=$((CH_OK + 1))
		[ "$s" != 0 ] && [ "$s" != - ] && CH_FAILED=$((CH_FAILED + 1))
	done < <(client_requests "/tmp/nfs/trace-$K" "${DPID[nfscli]}")
	result "${K}_client_hs" "ok:$CH_OK,failed:$CH_FAILED"
}

# ---------------------------------------------------------------- cases ---
case_rdns() {
	case_start rdns "$SRV_ADDR nfs-rdns.test"$'\n' on || return
	mount_nfs "$SRV_ADDR:/srv/tls" "$MNT"
	result rdns_rc "$MRC"
	say "rdns: mount $SRV_ADDR:/srv/tls rc $MRC after $MSECS s${MERR:+: $MERR}"
	if ((MRC == 0)); then
		ktls_now "$CLI_NS"; result rdns_ktls_client "$KT"; ((KT >= 2)) || { OK=0; OUT+=" no-ktls-client"; }
		ktls_now "$SRV_NS"; result rdns_ktls_server "$KT"; ((KT >= 2)) || { OK=0; OUT+=" no-ktls-server"; }
	fi
	io_umount rdns "$MNT" mount-rc
	trace_save "/tmp/nfs/trace-$K"
	client_hs
	((CH_OK >= 1 && CH_FAILED == 0)) || { OK=0; OUT+=" client-handshakes"; }
	[ "$(wire_sni)" = nfs-rdns.test ] || { OK=0; OUT+=" sni:$(wire_sni)"; }
	case_end
}
# A refusal by the client's daemon, with the SNI its ClientHello carried.
refusal() {   # case hosts-line policy sni
	case_start "$1" "$2"$'\n' "$3" || return
	refused "$SRV_ADDR:/srv/tls"
	trace_save "/tmp/nfs/trace-$K"
	client_hs
	((CH_FAILED >= 1 && CH_OK == 0)) || { OK=0; OUT+=" client-handshakes"; }
	[ "$(wire_sni)" = "$4" ] || { OK=0; OUT+=" sni:$(wire_sni)"; }
}
case_rdns_wrong() {
	refusal rdns_wrong "$SRV_ADDR nfs-other.test" on nfs-other.test || return
	case_end
}
case_rdns_off() {
	refusal rdns_off "$SRV_ADDR nfs-rdns.test" off "" || return
	case_end
}
case_stall() {
	local bg i line bound took a1 c1 s1 a2 c2 s2 d1 d2
	printf 'nameserver %s\noptions timeout:5 attempts:2\n' "$DNS_ADDR" >/etc/resolv.conf
	case_start stall "" on || return
	nsenter "--net=/run/netns/$CLI_NS" timeout "$NFS_MOUNT_TIMEOUT" mount -t nfs4 -o vers=4.2,retry=0,xprtsec=tls \
		"$SRV_ADDR:/srv/tls" "$MNT" >/tmp/nfs/mount-stall.log 2>&1 &
	bg=$!
	for ((i = 0; i < 500; i++)); do grep -q 'handshake_cmd_accept:' $TR/trace && break; nap 0.01; done
	mount_nfs nfs-named.test:/srv/tls "$MNT2"
	result stall_named_rc "$MRC"
	result stall_named_seconds "$MSECS"
	say "stall: mount nfs-named.test:/srv/tls rc $MRC after $MSECS s${MERR:+: $MERR}"
	io_umount stall_named "$MNT2" named-mount-rc
	wait "$bg"
	MRC=$?
	result stall_rc "$MRC"
	say "stall: mount $SRV_ADDR:/srv/tls rc $MRC: $(paste -sd' ' /tmp/nfs/mount-stall.log)"
	((MRC == 0)) && { OK=0; OUT+=" stalled-mounted"; umount "$MNT"; }
	((MRC == 124)) && { OK=0; OUT+=" stalled-mount-timed-out"; }
	trace_save "/tmp/nfs/trace-$K"
	client_requests "/tmp/nfs/trace-$K" "${DPID[nfscli]}" >/tmp/nfs/requests-stall
	sed 's/^/    request (accept complete status): /' /tmp/nfs/requests-stall
	{ read -r a1 c1 s1; read -r a2 c2 s2; } </tmp/nfs/requests-stall
	line=$(tail -n +"$((LOG0 + 1))" "${DLOG[nfscli]}" | grep 'reverse DNS lookup of the server timed out' | head -n 1)
	bound=$(sed -n 's/.* bound=\([^ ]*\).*/\1/p' <<<"$line") took=$(sed -n 's/.* took=\([^ ]*\).*/\1/p' <<<"$line")
	result stall_log "${line:+timed out, bound=$bound took=$took}"
	[[ $line == *"addr=$SRV_ADDR"* ]] || { OK=0; OUT+=" no-log-line"; }
	bound=$(dur_s "${bound:-x}")
	result stall_bound_s "$bound"
	fgt "$bound" 0 || { OK=0; OUT+=" no-bound"; bound=2; }
	if [ "$c1" = - ] || [ -z "$c2" ] || [ "$c2" = - ]; then
		OK=0 OUT+=" requests:$(paste -sd'|' /tmp/nfs/requests-stall)"
	else
		d1=$(awk -v a="$a1" -v c="$c1" 'BEGIN { printf "%.3f", c - a }')
		d2=$(awk -v a="$a2" -v c="$c2" 'BEGIN { printf "%.3f", c - a }')
		result stall_handshake_s "$d1"
		result stall_handshake_status "$s1"
		result stall_named_handshake_s "$d2"
		result stall_named_handshake_status "$s2"
		[ "$s1" != 0 ] || { OK=0; OUT+=" stalled-handshake-succeeded"; }
		fgt "$(awk -v b="$bound" -v s="$NFS_SNI_SLACK" 'BEGIN { print b + s }')" "$d1" || { OK=0; OUT+=" past-bound:${d1}s"; }
		fgt "$d1" "$(awk -v b="$bound" 'BEGIN { print 0.9 * b }')" || { OK=0; OUT+=" did-not-wait:${d1}s"; }
		[ "$s2" = 0 ] || { OK=0; OUT+=" named-status:$s2"; }
		fgt "$c1" "$c2" || { OK=0; OUT+=" named-after-stalled"; }
		fgt "$(awk -v b="$bound" 'BEGIN { print b / 2 }')" "$d2" || { OK=0; OUT+=" named-delayed:${d2}s"; }
	fi
	sed 's/^/    dns sink: /' /tmp/nfs/sink.log | head -n 4
	result stall_dns_queries "$(grep -c 'QUERY 1.0.99.10.in-addr.arpa type=12' /tmp/nfs/sink.log)"
	grep -q 'QUERY 1.0.99.10.in-addr.arpa type=12' /tmp/nfs/sink.log || { OK=0; OUT+=" no-ptr-query"; }
	# The stalled ClientHello went out without SNI (verify by address), the
	# named one with its name.
	[ "$(wire_sni)" = ",nfs-named.test" ] || { OK=0; OUT+=" sni:$(wire_sni)"; }
	cp /etc/resolv.conf.nfs-sni /etc/resolv.conf
	case_end
}

for c in $NFS_SNI_CASES; do
	declare -F "case_$c" >/dev/null || die "no case $c"
	"case_$c"
done
finish
