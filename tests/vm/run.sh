#!/bin/bash
# tests/vm/run.sh - tlshd-go end-to-end tests in a qemu VM running Debian's
# stock kernel (net/handshake, kTLS, nvme-tcp, nvmet-tcp with TLS).
#
#   tests/vm/run.sh [all|build|run|shell|clean]        (as root; README.md)
#
#   all    build what is missing, then boot and run $SCENARIOS      (default)
#   build  only build the cached artefacts
#   run    boot with what is cached (no network)
#   shell  boot to an interactive root shell (Ctrl-a x quits)
#   clean  remove $WORKDIR
#
# Settings (environment; defaults in brackets):
#   KERNEL_SUITE  Debian suite of the kernel: trixie (6.12) or trixie-backports (7.x)  [trixie]
#   WORKDIR       cache and output directory, shared by all kernels  [/var/tmp/tlshd-go-vm]
#   DAEMON        host path of a daemon binary; goes to /harness/bin/<name> in the
#                 guest and replaces the guest's /usr/sbin/tlshd       []
#   DAEMON_ARGS   its arguments [-s -c /etc/tlshd.conf; for a daemon other than
#                 tlshd with DAEMON_CONF set: -s -c /etc/tlshd-vm/daemon.conf]
#   DAEMON_CONF   host file installed as /etc/tlshd-vm/daemon.conf     []
#   SCENARIOS     guest/scenarios/<name>.sh to run, in order, in one boot  [nvme-basic]
#   INIT          PID 1 of the guest: bash (guest/init itself) or systemd (guest/init
#                 runs as tlshd-vm-harness.service)  [bash; systemd if a scenario
#                 has a "# vm-init: systemd" line]
#   EXTRA_FILES   "hostpath:guestpath ..." more files for the guest    []
#   GUEST_PKGS    extra Debian packages for the root image (own cache key)  []
#   TIMEOUT       seconds before qemu is killed                        [900]
#   SMP, MEM      guest CPUs and memory                                [2, 2G]
#   ACCEL         tcg | kvm | auto (kvm if usable and not PVM)         [auto]
#   BOOT_RETRIES  reboots of a boot that died before the guest init,
#                 or whose kernel hit a stale text-patch int3 (TCG)     [2]
#   BOOT_TIMEOUT  seconds for the guest init to start before a boot counts as dead  [180]
#   OUTDIR        where console.log and results.txt go  [$WORKDIR/out/<time>-<kernel>]
#   REFRESH=1     re-resolve the kernel and refresh the apt indexes
#   KEEP_DEBS=1   keep the kernel .debs after unpacking (default: removed)
#   MIRROR        Debian mirror                          [http://deb.debian.org/debian]
# Scenario settings (EXPECT_*, STORM_*, MULTI_*, NETNS_*, FAIL_*, FAULTS_*, FD_*, BASIC_*,
# HOST_DAEMON*, TARGET_DAEMON*, NFS_*, POLICY_*, UNIT_*, SCENARIO_TIMEOUT, DAEMON_LOG_CONSOLE, ...) are
# passed to the guest unchanged; see the header of each scenario.
#
# Exit status 0 only if the guest init printed "TLSHD-VM: PASS nonce=<N>" as a
# whole console line, N being this boot's nonce (kernel command line).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KERNEL_SUITE=${KERNEL_SUITE:-trixie}
SUITE=trixie                       # the guest userland
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORKDIR=${WORKDIR:-/var/tmp/tlshd-go-vm}
DAEMON=${DAEMON:-}
DAEMON_CONF=${DAEMON_CONF:-}
SCENARIOS=${SCENARIOS:-nvme-basic}
INIT=${INIT:-}
EXTRA_FILES=${EXTRA_FILES:-}
GUEST_PKGS=${GUEST_PKGS:-}
TIMEOUT=${TIMEOUT:-900}
SMP=${SMP:-2}
MEM=${MEM:-2G}
ACCEL=${ACCEL:-auto}
BOOT_RETRIES=${BOOT_RETRIES:-2}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-180}

# The guest userland: the reference daemon (interop, comparisons) and tools.
# systemd (already pulled in by ktls-utils) and systemd-sysv: INIT=systemd.
# nfs-kernel-server, nfs-common (nfsd, mountd, nfsdcld, mount.nfs) and openssl
# (test certificates and CRLs made in the guest): scenario nfs-tls.
BASE_PKGS="ktls-utils nvme-cli keyutils kmod iproute2 procps util-linux strace systemd systemd-sysv
	nfs-kernel-server nfs-common openssl"
# Needed to mount the two disks in stage 1 (dependencies are added).
STAGE1_MODULES="virtio_blk ext4"
# Kernel options every scenario relies on.
KCONFIG_NEEDED="NET_HANDSHAKE TLS NVME_TCP NVME_TCP_TLS NVME_TARGET_TCP NVME_TARGET_TCP_TLS
	KEYS NVME_KEYRING VIRTIO_BLK EXT4_FS BLK_DEV_RAM BLK_DEV_NULL_BLK VETH
	NFS_FS NFS_V4 NFSD NFSD_V4"
# Bump when the root image layout changes.
IMAGE_FORMAT=2
# Variables handed to the guest besides the ones above (shell patterns).
GUEST_VARS="EXPECT_* STORM_* MULTI_* NETNS_* FAIL_* FAULTS_* FD_* BASIC_* SHA384_* HOST_DAEMON*
	TARGET_DAEMON* NFS_* POLICY_* UNIT_* INIT_BLAME SCENARIO_TIMEOUT CONSOLE_LOGLEVEL DAEMON_LOG_CONSOLE DAEMON_START_WAIT DD_MB CONNECT_TIMEOUT"

log() { printf '>>> %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, mkfs.ext4 -d of a root tree)"
[ "$(uname -m)" = x86_64 ] || die "x86_64 host required"

KSTATE=$WORKDIR/kernel/$KERNEL_SUITE.kver   # kernel version last built for the suite

# ------------------------------------------------------------ host tools ---
is_static() { ! LC_ALL=C readelf -d "$1" 2>/dev/null | grep -q NEEDED; }   # true without readelf
busybox_path() {
	local b
	for b in /bin/busybox /usr/bin/busybox; do
		[ -x "$b" ] && is_static "$b" && { echo "$b"; return 0; }
	done
	return 1
}
host_deps() {
	local need=() tool pkg
	while read -r tool pkg; do
		command -v "$tool" >/dev/null || need+=("$pkg")
	done <<-EOF
	qemu-system-x86_64 qemu-system-x86
	debootstrap debootstrap
	cpio cpio
	zstd zstd
	xz xz-utils
	mkfs.ext4 e2fsprogs
	depmod kmod
	readelf binutils
	EOF
	[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
	busybox_path >/dev/null || need+=(busybox-static)
	if ((${#need[@]})); then
		log "installing host packages: ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
	fi
	busybox_path >/dev/null || die "no static busybox (apt-get install busybox-static)"
}

# ------------------------------------------------ kernel (private apt) ---
# An apt configuration of our own under $WORKDIR/apt/<suite>: the host's
# sources, pins and dpkg database are neither read nor changed.
APT=()
apt_setup() {
	local d=$WORKDIR/apt/$1
	mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/prefs.d"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $1 main" >"$d/sources.list"
	[ -e "$d/status" ] || : >"$d/status"
	APT=(-o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
		-o "Dir::Etc::Preferences=/nonexistent" -o "Dir::Etc::PreferencesParts=$d/prefs.d"
		-o "Dir::State::Lists=$d/lists" -o "Dir::State::status=$d/status"
		-o "Dir::Cache=$d" -o "Dir::Cache::archives=$d/archives"
		-o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
	# A stamp file: apt gives the index files the server's mtime.
	if [ "${REFRESH:-0}" = 1 ] || [ ! -e "$d/updated" ]; then
		log "apt update ($1, private configuration)"
		apt-get "${APT[@]}" -qq update
		touch "$d/updated"
	fi
}

# Everything a boot needs from one kernel, in $WORKDIR/kernel/<version>/:
#   boot       the ELF vmlinux (PVH entry) or, failing that, the bzImage
#   modules.ext4  /usr/lib/modules/<version>, depmod'ed (second disk, read-only)
#   stage1/    decompressed disk modules for the initramfs, in load order
build_kernel() {
	local kver="" pkg parts p deb debs=() t
	[ "${REFRESH:-0}" = 1 ] || kver=$(cat "$KSTATE" 2>/dev/null || true)
	if [ -n "$kver" ] && [ -e "$WORKDIR/kernel/$kver/.ok" ]; then KVER=$kver; return 0; fi

	apt_setup "$KERNEL_SUITE"
	pkg=$(apt-cache "${APT[@]}" depends linux-image-amd64 |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
	[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 in $KERNEL_SUITE"
	KVER=${pkg#linux-image-}
	local kd=$WORKDIR/kernel/$KVER
	if [ ! -e "$kd/.ok" ]; then
		# 7.x: linux-image-<v> is empty and depends on linux-{base,binary,modules}-<v>.
		parts=$(apt-cache "${APT[@]}" depends "$pkg" | awk -v v="-$KVER" \
			'$1 == "Depends:" && $2 ~ /^linux-[a-z]+-/ && substr($2, length($2) - length(v) + 1) == v { print $2 }')
		mkdir -p "$WORKDIR/debs"
		for p in $pkg $parts; do
			deb=$(ls "$WORKDIR/debs/${p}_"*.deb 2>/dev/null | tail -n1 || true)
			if [ -z "$deb" ]; then
				log "downloading $p"
				(cd "$WORKDIR/debs" && apt-get "${APT[@]}" -qq download "$p")
				deb=$(ls "$WORKDIR/debs/${p}_"*.deb | tail -n1)
			fi
			debs+=("$deb")
		done
		rm -rf "$kd"
		t=$kd/tree
		mkdir -p "$t"
		for deb in "${debs[@]}"; do log "unpacking ${deb##*/}"; dpkg-deb -x "$deb" "$t"; done
		kernel_artefacts "$t" "$kd"
		rm -rf "$t"
		# The artefacts are all a boot needs: keep the cache small (CI).
		[ "${KEEP_DEBS:-0}" = 1 ] || rm -f "${debs[@]}"
		touch "$kd/.ok"
	fi
	mkdir -p "$WORKDIR/kernel"
	echo "$KVER" >"$KSTATE"
}

kernel_artefacts() {   # unpacked-tree kerneldir
	local t=$1 kd=$2 vmlinuz cfg mods o m f
	# 6.12: /boot/{vmlinuz,config}-<v>; 7.x: /usr/lib/modules/<v>/{vmlinuz,config}.
	for mods in "$t/usr/lib/modules/$KVER" "$t/lib/modules/$KVER" ""; do [ -d "$mods" ] && break; done
	[ -n "$mods" ] || die "no modules directory for $KVER"
	vmlinuz=$t/boot/vmlinuz-$KVER cfg=$t/boot/config-$KVER
	[ -e "$vmlinuz" ] || vmlinuz=$mods/vmlinuz cfg=$mods/config
	[ -e "$vmlinuz" ] && [ -e "$cfg" ] || die "no vmlinuz/config in the $KVER packages"
	for o in $KCONFIG_NEEDED; do
		grep -Eq "^CONFIG_$o=[ym]" "$cfg" || die "kernel $KVER lacks CONFIG_$o"
	done
	cp "$cfg" "$kd/config"
	extract_vmlinux "$vmlinuz" "$kd/boot"

	# Modules: moved under <tree>/mods/lib/modules/<v> so that the host's
	# depmod -b (which appends /lib/modules) indexes them, then imaged.
	mkdir -p "$t/mods/lib/modules"
	mv "$mods" "$t/mods/lib/modules/$KVER"
	rm -f "$t/mods/lib/modules/$KVER/vmlinuz" "$t/mods/lib/modules/$KVER/config"
	depmod -b "$t/mods" "$KVER"
	mkimage "$t/mods/lib/modules" "$kd/modules.ext4" 32 tlshd-vm-mods

	mkdir -p "$kd/stage1"
	for m in $STAGE1_MODULES; do
		modprobe -d "$t/mods" -S "$KVER" --show-depends "$m" || die "no module $m in $KVER"
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r f; do
		m=${f##*/}
		case $m in   # busybox insmod cannot read compressed modules
		*.xz) xz -dc "$f" >"$kd/stage1/${m%.xz}"; m=${m%.xz} ;;
		*.zst) zstd -qdc "$f" >"$kd/stage1/${m%.zst}"; m=${m%.zst} ;;
		*) cp "$f" "$kd/stage1/$m" ;;
		esac
		echo "$m" >>"$kd/stage1/order"
	done
}

# The PVH entry point (CONFIG_PVH) lets qemu start the ELF vmlinux directly:
# no firmware real-mode setup, no decompression in the guest (~1 s under TCG).
# bzImage header: setup_sects at 0x1f1, payload_offset/_length at 0x248/0x24c
# (relative to the protected-mode code); the payload ends with 4 size bytes.
extract_vmlinux() {   # vmlinuz out
	local z=$1 out=$2 sects off len
	sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$z" | tr -d ' ')
	read -r off len <<<"$(od -An -tu4 -j $((0x248)) -N8 "$z")"
	off=$(((sects + 1) * 512 + off))
	if dd if="$z" bs=64K iflag=skip_bytes,count_bytes skip="$off" count=$((len - 4)) status=none |
		zstd -qdc >"$out.elf" 2>/dev/null &&
		LC_ALL=C readelf -n "$out.elf" 2>/dev/null | grep -q 'Unknown note type: (0x00000012)'; then
		mv "$out.elf" "$out"   # has the Xen PHYS32_ENTRY note
	else
		log "no zstd vmlinux with a PVH note in ${z##*/}: booting the bzImage"
		rm -f "$out.elf"
		cp "$z" "$out"
	fi
}

mkimage() {   # dir image spare-MiB label
	local mb=$(($(du -sm "$1" | cut -f1) * 11 / 10 + $3))
	rm -f "$2.tmp"
	truncate -s "${mb}M" "$2.tmp"
	mkfs.ext4 -q -F -L "$4" -m 0 -E lazy_itable_init=0 -d "$1" "$2.tmp" "${mb}M"
	mv "$2.tmp" "$2"
}

# ---------------------------------------------------------- root image ---
# Kernel-independent (modules are the second disk), keyed by its package list.
ROOT_IMAGE=
pkg_list() {   # sorted, comma-separated
	# shellcheck disable=SC2086
	printf '%s\n' $BASE_PKGS $GUEST_PKGS | sort -u | paste -sd, -
}
root_key() {
	local pkgs
	pkgs=$(pkg_list)
	printf '%s\n' "$IMAGE_FORMAT" "$SUITE" "$MIRROR" "$pkgs" | sha256sum | cut -c1-12
}
build_root() {
	local key pkgs r
	key=$(root_key)
	ROOT_IMAGE=$WORKDIR/root-$key.ext4
	[ -s "$ROOT_IMAGE" ] && return 0
	pkgs=$(pkg_list)
	r=$WORKDIR/rootfs-$key
	rm -rf "$r"
	mkdir -p "$WORKDIR/debootstrap-cache"
	log "debootstrap $SUITE minbase + $pkgs"
	debootstrap --variant=minbase --merged-usr --cache-dir="$WORKDIR/debootstrap-cache" \
		--include="$pkgs" "$SUITE" "$r" "$MIRROR" >"$WORKDIR/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$WORKDIR/debootstrap.log" >&2; die "debootstrap failed ($WORKDIR/debootstrap.log)"; }
	# The guest never runs apt, man or a locale: drop their data.
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/usr/share/doc/* \
		"$r"/usr/share/man/* "$r"/usr/share/locale/* "$r"/usr/share/info/*
	rm -rf "$r/usr/lib/modules"
	mkdir -p "$r/usr/lib/modules" "$r/harness"
	# INIT=systemd: every boot starts from this image, so units with
	# ConditionNeedsUpdate= (ldconfig, sysusers, hwdb, catalog) would run in
	# every boot; the image is up to date.
	touch "$r/etc/.updated" "$r/var/.updated"
	# The NFS packages enable nfsd, rpcbind and the NFS client units; under
	# INIT=systemd they would start in init_net in every boot. Masked: the
	# nfs-tls scenario starts what it needs itself, in its namespaces.
	for u in nfs-server nfs-kernel-server nfs-mountd nfsdcld nfs-idmapd nfs-blkmap rpc-statd \
		rpc-statd-notify rpcbind rpc-svcgssd rpc-gssd; do
		ln -sf /dev/null "$r/etc/systemd/system/$u.service"
	done
	ln -sf /dev/null "$r/etc/systemd/system/rpcbind.socket"
	ln -sf /dev/null "$r/etc/systemd/system/nfs-client.target"
	log "building root image ${ROOT_IMAGE##*/}"
	mkimage "$r" "$ROOT_IMAGE" 200 tlshd-vm-root
	rm -rf "$r"
}

# ------------------------------------------------ per-run initramfs ---
guest_default_args() {   # daemon-path-in-guest
	if [ "$1" = /usr/sbin/tlshd ]; then echo "-s -c /etc/tlshd.conf"
	elif [ -n "$DAEMON_CONF" ]; then echo "-s -c /etc/tlshd-vm/daemon.conf"
	else echo "-s -c /etc/tlshd.conf"; fi   # tlshd-go converts a tlshd.conf
}
build_initrd() {   # out
	local s=$WORKDIR/stage1.tmp ov kd=$WORKDIR/kernel/$KVER gdaemon=/usr/sbin/tlshd spec src dst v pat n
	rm -rf "$s"
	mkdir -p "$s/bin" "$s/modules"
	cp "$(busybox_path)" "$s/bin/busybox"
	install -m 0755 "$HERE/guest/stage1" "$s/init"
	cp "$kd"/stage1/* "$s/modules/"
	ov=$s/overlay
	mkdir -p "$ov/harness/bin" "$ov/harness/scenarios" "$ov/etc/tlshd-vm"
	install -m 0755 "$HERE/guest/init" "$ov/harness/init"
	install -m 0644 "$HERE/guest/lib.sh" "$ov/harness/lib.sh"
	install -m 0755 "$HERE/guest/tlswire.pl" "$ov/harness/tlswire.pl"
	install -m 0755 "$HERE"/guest/scenarios/*.sh "$ov/harness/scenarios/"
	# INIT=systemd: the harness units (harmless under bash), the helpers for
	# scenarios that run the daemon from its unit, and the project's unit
	# files as they are in the tree (scenarios install them).
	mkdir -p "$ov/etc/systemd/system" "$ov/harness/systemd"
	install -m 0644 "$HERE"/guest/systemd/*.target "$HERE"/guest/systemd/*.service "$ov/etc/systemd/system/"
	if [ "$INIT" = systemd ]; then   # boot time: guest/systemd/masked
		mkdir -p "$ov/etc/systemd/system-generators"
		grep -v '^#' "$HERE/guest/systemd/masked" | while read -r u; do
			case $u in
			"") ;;
			*-generator) ln -sf /dev/null "$ov/etc/systemd/system-generators/$u" ;;
			*) ln -sf /dev/null "$ov/etc/systemd/system/$u" ;;
			esac
		done
	fi
	install -m 0644 "$HERE/guest/unit.sh" "$ov/harness/unit.sh"
	cp -a "$HERE/../../systemd/tlshd-go.service" "$HERE/../../systemd/tlshd-go.service.d" "$ov/harness/systemd/"
	if [ -n "$DAEMON" ]; then
		[ -f "$DAEMON" ] && [ -x "$DAEMON" ] || die "DAEMON=$DAEMON is not an executable file"
		gdaemon=/harness/bin/${DAEMON##*/}
		install -m 0755 "$DAEMON" "$ov$gdaemon"
	fi
	[ -z "$DAEMON_CONF" ] || install -m 0644 "$DAEMON_CONF" "$ov/etc/tlshd-vm/daemon.conf"
	# The reference tlshd (1.0.0 reads /etc/tlshd.conf; a missing file is fatal).
	printf '[debug]\nloglevel=1\ntls=0\nnl=0\n\n[authenticate]\n' >"$ov/etc/tlshd.conf"
	for spec in $EXTRA_FILES; do
		src=${spec%%:*} dst=${spec#*:}
		[ -e "$src" ] && [ "${dst:0:1}" = / ] || die "EXTRA_FILES: bad entry $spec"
		mkdir -p "$ov${dst%/*}"
		cp -a "$src" "$ov$dst"
	done
	{
		printf 'DAEMON=%q\n' "$gdaemon"
		if [ -n "${DAEMON_ARGS+x}" ]; then v=$DAEMON_ARGS; else v=$(guest_default_args "$gdaemon"); fi
		printf 'DAEMON_ARGS=%q\n' "$v"
		printf 'SCENARIOS=%q\n' "$SCENARIOS"
		printf 'GUEST_SHELL=%q\n' "$GUEST_SHELL"
		printf 'INIT=%q\n' "$INIT"
		for n in $(compgen -v); do
			for pat in $GUEST_VARS; do
				# shellcheck disable=SC2254
				case $n in $pat) printf '%s=%q\n' "$n" "${!n}"; break ;; esac
			done
		done
	} >"$ov/harness/env"
	(cd "$s" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1) >"$1"
	rm -rf "$s"
}

# ---------------------------------------------------------------- boot ---
accel() {
	case $ACCEL in
	tcg | kvm) echo "$ACCEL" ;;
	auto)
		# A PVM host (kvm_pvm) has /dev/kvm but runs no stock guest kernel.
		if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] &&
			{ [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
			echo kvm
		else
			echo tcg
		fi ;;
	*) die "ACCEL=$ACCEL: tcg, kvm or auto" ;;
	esac
}
# INIT: bash unless set, or unless a scenario needs systemd ("# vm-init: systemd").
resolve_init() {
	local s wants=""
	for s in $SCENARIOS; do
		grep -q '^# vm-init: systemd' "$HERE/guest/scenarios/$s.sh" 2>/dev/null && wants="$wants $s"
	done
	case ${INIT:-} in
	"") if [ -n "$wants" ]; then INIT=systemd; else INIT=bash; fi ;;
	bash) [ -z "$wants" ] || die "INIT=bash, but these scenarios need systemd:$wants" ;;
	systemd) ;;
	*) die "INIT=$INIT: bash or systemd" ;;
	esac
}
# systemd as PID 1: stage 1 switch_roots to it (tlshd_vm_init=); the
# target tlshd-vm.target (basic.target + the harness) instead of
# default.target; ktls-utils' tlshd.service masked (it is enabled in the
# image and would take a share of the requests).
init_cmdline() {
	[ "$INIT" = systemd ] || return 0
	echo " tlshd_vm_init=systemd systemd.unit=tlshd-vm.target systemd.mask=tlshd.service systemd.firstboot=no"
}
# A random nonce per run, on the kernel command line: guest/init prints
# "TLSHD-VM: PASS nonce=<it> (...)", and only that whole line counts
# (pass_line), so no daemon log or scenario output on the console can
# produce a pass by printing the words.
NONCE=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
pass_line() {   # console-log
	grep -qE "^\[ *[0-9]+\.[0-9]{3}\] TLSHD-VM: PASS nonce=$NONCE \([^()]*\)\$" "$1"
}
QEMU=()
qemu_cmd() {   # initrd
	local kd=$WORKDIR/kernel/$KVER a cpu=max
	a=$(accel)
	[ "$a" = kvm ] && cpu=host
	[ "$a" = tcg ] && a=tcg,thread=multi
	QEMU=(qemu-system-x86_64 -accel "$a" -cpu "$cpu" -smp "$SMP" -m "$MEM"
		-nodefaults -no-user-config -no-reboot -display none
		-device virtio-rng-pci
		-drive "file=$ROOT_IMAGE,format=raw,if=virtio,snapshot=on,cache=unsafe"
		-drive "file=$kd/modules.ext4,format=raw,if=virtio,readonly=on"
		-kernel "$kd/boot" -initrd "$1"
		-append "console=ttyS0 quiet loglevel=4 panic=-1 oops=panic rdinit=/init tlshd_vm_nonce=$NONCE$(init_cmdline)")
}

# One boot; console lines prefixed with host seconds since qemu started.
# A boot that shows no guest init within BOOT_TIMEOUT seconds is killed.
boot_once() {   # console-log
	local fifo=$1.fifo t0 d line part="" qpid in log seen=0 rc
	rm -f "$fifo"
	mkfifo "$fifo"
	t0=${EPOCHREALTIME/./}
	timeout --kill-after=10 "$TIMEOUT" "${QEMU[@]}" -serial stdio </dev/null >"$fifo" 2>&1 &
	qpid=$!
	exec {in}<"$fifo" {log}>"$1"
	rm -f "$fifo"
	while :; do
		if IFS= read -r -t 2 -u "$in" line; then
			line=$part$line part=""
			d=$((${EPOCHREALTIME/./} - t0))
			printf -v line '[%4d.%03d] %s' $((d / 1000000)) $((d / 1000 % 1000)) "${line%$'\r'}"
			printf '%s\n' "$line"
			printf '%s\n' "$line" >&"$log"
			[[ $line == *"TLSHD-VM: init started"* ]] && seen=1
		elif (($? > 128)); then   # no complete line for 2 s
			part+=$line
			if ((!seen && ${EPOCHREALTIME/./} - t0 > BOOT_TIMEOUT * 1000000)); then
				log "no guest init after BOOT_TIMEOUT=$BOOT_TIMEOUT s: killing qemu"
				kill "$qpid" 2>/dev/null
				seen=1   # once
			fi
		else
			break   # EOF: qemu exited
		fi
	done
	exec {in}<&- {log}>&-
	rc=0
	wait "$qpid" || rc=$?
	return "$rc"
}

run_vm() {
	local out initrd try=0 rc=0 con why
	out=${OUTDIR:-$WORKDIR/out/$(date +%Y%m%d-%H%M%S)-$KVER}
	mkdir -p "$out"
	initrd=$out/initrd.gz
	build_initrd "$initrd"
	qemu_cmd "$initrd"
	con=$out/console.log
	while :; do
		log "boot $KVER ($(accel), smp $SMP, mem $MEM, init $INIT): $SCENARIOS"
		rc=0
		boot_once "$con" || rc=$?
		# A boot that never reached the guest init (TCG early-boot oopses, ~1 in
		# 10 on 7.x) says nothing about the code under test: boot again. So
		# does a guest kernel that hit an int3 in its own text: the kernel
		# patches text (static keys) with int3 and IPIs, and multi-threaded
		# TCG can run the stale int3 (an "Oops: int3", then panic); no
		# userspace can cause that. Never retry any other failure.
		why=""
		if ! grep -q 'TLSHD-VM: init started' "$con"; then
			why="boot died before the guest init"
		elif ! pass_line "$con" && grep -q '\] Oops: int3' "$con"; then
			why="guest kernel hit a stale text-patch int3 (TCG)"
		fi
		[ -n "$why" ] || break
		((try < BOOT_RETRIES)) || break
		try=$((try + 1))
		mv "$con" "$out/console.boot-failure-$try.log"
		log "$why (console.boot-failure-$try.log); retry $try/$BOOT_RETRIES"
	done
	rm -f "$initrd"
	{
		echo "kernel=$KVER"
		echo "scenarios=$SCENARIOS"
		echo "daemon=${DAEMON:-/usr/sbin/tlshd}"
		echo "init=$INIT"
		echo "boot_retries=$try"
		echo "host_qemu_exit=$rc"
		sed -n 's/^\[ *[0-9.]*\] RESULT //p' "$con"
		sed -n 's/^\[ *\([0-9.]*\)\] TLSHD-VM: init started, guest uptime \([0-9.]*\)s.*/host_seconds_to_init=\1\nguest_uptime_at_init=\2/p' "$con"
		tail -n1 "$con" | sed -n 's/^\[ *\([0-9.]*\)\].*/host_seconds_total=\1/p'
		if pass_line "$con"; then echo result=PASS; else echo result=FAIL; fi
	} >"$out/results.txt"
	[ "$rc" = 124 ] && log "qemu killed after TIMEOUT=$TIMEOUT s"
	grep -E '^(result|[a-z0-9-]+\.status)=' "$out/results.txt" | sed 's/^/    /' >&2
	log "console log and results: $out/{console.log,results.txt}"
	pass_line "$con"
}

build_all() {
	host_deps
	mkdir -p "$WORKDIR"
	build_kernel
	build_root
}
use_cached() {
	KVER=$(cat "$KSTATE" 2>/dev/null || true)
	[ -n "$KVER" ] && [ -e "$WORKDIR/kernel/$KVER/.ok" ] || die "no kernel built for $KERNEL_SUITE: run '$0 build'"
	ROOT_IMAGE=$WORKDIR/root-$(root_key).ext4
	[ -s "$ROOT_IMAGE" ] || die "no root image for this package list: run '$0 build'"
}
check_scenarios() {
	local s
	for s in $SCENARIOS; do
		[ -f "$HERE/guest/scenarios/$s.sh" ] || die "no scenario $s (tests/vm/guest/scenarios/$s.sh)"
	done
}

GUEST_SHELL=0
KVER=
# One VM at a time per WORKDIR: builds share the cache, and boots under
# TCG are CPU-bound. Concurrent invocations wait their turn.
if [ "${1:-all}" != clean ] && [ -z "${TLSHD_VM_LOCKED:-}" ]; then
	mkdir -p "$WORKDIR"
	exec 9>"$WORKDIR/.lock"
	if ! flock -n 9; then
		log "another run holds $WORKDIR/.lock; waiting"
		flock 9
	fi
	export TLSHD_VM_LOCKED=1
fi
case "${1:-all}" in
clean) rm -rf "$WORKDIR" ;;
build) build_all; log "built: kernel $KVER, ${ROOT_IMAGE##*/} in $WORKDIR" ;;
all) check_scenarios; resolve_init; build_all; run_vm ;;
run) check_scenarios; resolve_init; use_cached; run_vm ;;
shell)
	use_cached
	resolve_init
	GUEST_SHELL=1
	initrd=$WORKDIR/shell-initrd.gz
	build_initrd "$initrd"
	qemu_cmd "$initrd"
	rc=0
	"${QEMU[@]}" -serial mon:stdio || rc=$?
	rm -f "$initrd"
	exit "$rc" ;;
*) die "usage: $0 [all|build|run|shell|clean]" ;;
esac
