#!/bin/bash
# vm-init: systemd
# package: the Debian package (make deb) on a guest with ktls-utils, as an
# operator would use it. Needs the .deb in the guest at /harness/tlshd-go.deb:
#   tests/lib/build-deb.sh bin/deb
#   KERNEL_SUITE=trixie DAEMON=bin/tlshd-go SCENARIOS=package \
#     EXTRA_FILES="$(ls bin/deb/tlshd-go_*.deb):/harness/tlshd-go.deb" tests/vm/run.sh all
# (DAEMON only satisfies run.sh; the daemon under test is the package's.)
#  1. tlshd (ktls-utils) is the agent: unmask it (run.sh masks it at boot),
#     start it;
#  2. dpkg -i: the unit is installed but neither enabled nor started, tlshd
#     untouched; the binary is a PIE; probe prints every capability;
#  3. switch (tlshd-go(8)): systemctl disable --now tlshd; enable --now
#     tlshd-go: tlshd.service now names tlshd-go.service;
#  4. two loopback NVMe/TCP connects through the unit's daemon; a reload
#     with a broken policy forces an error: journalctl -p err shows it, and
#     the info start-up line is not at err; tlshd-go status counts exactly
#     the scenario's handshakes (text and Prometheus);
#  5. roll back: systemctl disable --now tlshd-go; enable --now tlshd; a
#     connect through tlshd;
#  6. dpkg --purge: every file the package listed is gone, /etc/tlshd-go
#     too, no link to tlshd-go.service left, tlshd still active.
# RESULT keys: deb_installed, unit_enabled_after_install,
# unit_active_after_install, tlshd_active_before, bin_pie, probe_*,
# switch_alias, c<N>_*, journal_err_forced, journal_err_has_info,
# status_succeeded, status_failed, status_prom, rollback_tlshd_active,
# rollback_c3_connect_rc, purge_rc, purge_left_files, purge_left_links,
# tlshd_active_after_purge.
# shellcheck source=../lib.sh
. /harness/lib.sh
# shellcheck source=../unit.sh
. /harness/unit.sh
NQN=nqn.2024-01.io.tlshd-go:package
DEB=/harness/tlshd-go.deb

need_systemd
[ -f "$DEB" ] || die "no $DEB: pass EXTRA_FILES=bin/deb/tlshd-go_VERSION_amd64.deb:$DEB"
ram_disks 1 64 || die "brd"
nvmet_port 1 "$ADDR" "$SVCID" && nvmet_subsys "$NQN" /dev/ram0 && nvmet_link 1 "$NQN" || die "nvmet"
psk_insert "$NQN" 1 || finish

# ------------------------------------------------- 1. tlshd in charge ---
# run.sh masks tlshd.service on the kernel command line (systemd.mask=:
# systemd-debug-generator's /dev/null link under /run/systemd), and every
# daemon-reload (dpkg's systemd trigger makes one) would run the generator
# again; an operator's machine has no such mask. Mask the generator, drop
# its link.
mkdir -p /etc/systemd/system-generators
ln -sf /dev/null /etc/systemd/system-generators/systemd-debug-generator
for f in /run/systemd/*/tlshd.service; do
	[ "$(readlink "$f" 2>/dev/null)" = /dev/null ] && { say "unmasking: removing $f"; rm -f "$f"; }
done
systemctl unmask --runtime tlshd.service >/dev/null 2>&1
systemctl daemon-reload
systemctl enable --now tlshd.service >/dev/null 2>&1
result tlshd_active_before "$(systemctl is-active tlshd.service)"
[ "$(systemctl is-active tlshd.service)" = active ] || die "tlshd.service does not start: $(systemctl status --no-pager tlshd.service 2>&1 | tail -n 5)"

# ------------------------------------------------------- 2. install ---
dpkg -i "$DEB" >/tmp/dpkg.log 2>&1
rc=$?
sed 's/^/    dpkg: /' /tmp/dpkg.log
result deb_installed "$rc"
((rc == 0)) || die "dpkg -i failed"
dpkg -L tlshd-go | sort >/tmp/deb.files
sed 's/^/    file: /' /tmp/deb.files
result unit_enabled_after_install "$(systemctl is-enabled tlshd-go.service 2>&1)"
result unit_active_after_install "$(systemctl is-active tlshd-go.service 2>&1)"
[ "$(systemctl is-active tlshd-go.service)" = inactive ] || fail "dpkg -i started tlshd-go.service"
[ "$(systemctl is-active tlshd.service)" = active ] || fail "dpkg -i disturbed tlshd.service"
cmp -s /usr/sbin/tlshd-go /harness/bin/tlshd-go && say "the package's binary is the DAEMON build"
if LC_ALL=C od -An -tx1 -j16 -N2 /usr/sbin/tlshd-go | grep -q '03 00'; then result bin_pie yes; else result bin_pie no; fail "/usr/sbin/tlshd-go is not ET_DYN"; fi
/usr/sbin/tlshd-go probe >/tmp/probe.txt 2>&1
result probe_rc $?
sed 's/^/    probe: /' /tmp/probe.txt
result probe_rows "$(($(wc -l </tmp/probe.txt) - 1))"
result probe_ktls_aes128 "$(awk '/^kTLS TLS_AES_128_GCM_SHA256/ {print $3}' /tmp/probe.txt)"
result probe_rekey "$(awk -F'  +' '/^kTLS rekey/ {print $2}' /tmp/probe.txt)"
/usr/sbin/tlshd-go probe --json >/tmp/probe.json 2>&1 || :
grep -q '"name": "kTLS on MPTCP"' /tmp/probe.json || fail "probe --json lacks rows"

# -------------------------------------------------------- 3. switch ---
systemctl disable --now tlshd.service >/dev/null 2>&1
systemctl enable --now tlshd-go.service >/tmp/enable.log 2>&1 || fail "systemctl enable --now tlshd-go: $(cat /tmp/enable.log)"
MAINPID=$(prop MainPID)
result switch_alias "$(systemctl show -p Id --value tlshd.service)"
[ "$(systemctl show -p Id --value tlshd.service)" = tlshd-go.service ] || fail "tlshd.service does not name tlshd-go.service"
for _ in 1 2 3 4 5 6 7 8 9 10; do [ "$(prop ActiveState)" = activating ] || break; nap 1; done
if [ "$(prop ActiveState)" != active ]; then
	systemctl status --no-pager -l tlshd-go.service 2>&1 | tail -n 15 | sed 's/^/    status: /'
	journalctl -q -u tlshd-go -n 30 -o cat | sed 's/^/    journal: /'
	die "tlshd-go.service $(prop ActiveState)/$(prop SubState)"
fi
mkdir -p /etc/tlshd-go
result limit_core "$(awk '/^Max core file size/ {print $5}' /proc/"$MAINPID"/limits)"
result memory_max "$(prop MemoryMax)"
[ "$(awk '/^Max core file size/ {print $5}' /proc/"$MAINPID"/limits)" = 0 ] || fail "core dumps not off"

# ----------------------------------------- 4. handshakes, journal, status ---
journal_mark
JSTART=$JCUR
hs_total=0
connect_once() {   # n
	nvme_connect "$NQN"
	result "c$1_connect_rc" "$CONNECT_RC"
	((CONNECT_RC == 0)) || { fail "connect $1: rc $CONNECT_RC"; return 1; }
	verify_connected "$NQN" "c$1_"
	nvme disconnect -n "$NQN" >/dev/null || fail "nvme disconnect"
	hs_total=$((hs_total + 2 * QUEUES))
}
connect_once 1
connect_once 2
journal_wait 'msg=handshake' "$hs_total" 10 || fail "$JLINES handshake lines, expected $hs_total"

# A forced error: a broken policy on reload (the daemon keeps the old one).
printf '[global]\nmax_concurrent = "many"\n' >"$UNIT_CONF"
journal_mark
systemctl reload tlshd-go.service
journal_wait 'reload failed' 1 10 || fail "no 'reload failed' line"
rm -f "$UNIT_CONF"
journalctl -q -u tlshd-go -p err --after-cursor="$JSTART" -o cat >/tmp/journal.err 2>&1
sed 's/^/    journal -p err: /' /tmp/journal.err
if grep -q 'reload failed' /tmp/journal.err; then result journal_err_forced yes; else result journal_err_forced no; fail "journalctl -p err does not show the forced error"; fi
journalctl -q -u tlshd-go -p err -o cat >/tmp/journal.err.all 2>&1
if grep -qE 'tlshd-go started|msg=handshake' /tmp/journal.err.all; then result journal_err_has_info yes; fail "info lines at priority err"; else result journal_err_has_info no; fi
journalctl -q -u tlshd-go -p info -o cat | grep -c 'tlshd-go started' | sed 's/^/    journal -p info start-up lines: /'

/usr/sbin/tlshd-go status >/tmp/status.txt 2>&1 || fail "tlshd-go status: $(cat /tmp/status.txt)"
sed 's/^/    status: /' /tmp/status.txt
ok=$(sed -n 's/^handshakes: \([0-9]*\) succeeded, \([0-9]*\) failed.*/\1/p' /tmp/status.txt)
bad=$(sed -n 's/^handshakes: \([0-9]*\) succeeded, \([0-9]*\) failed.*/\2/p' /tmp/status.txt)
result status_succeeded "${ok:-none}"
result status_failed "${bad:-none}"
[ "$ok" = "$hs_total" ] || fail "status counts ${ok:-no} successful handshakes, the scenario ran $hs_total"
[ "$bad" = 0 ] || fail "status counts $bad failures"
/usr/sbin/tlshd-go status --prometheus >/tmp/status.prom 2>&1
sed -n '/^tlshd_go_handshakes_total/p;/duration_seconds{/p' /tmp/status.prom | sed 's/^/    prom: /'
prom=$(awk '/^tlshd_go_handshakes_total\{.*result="ok"/ {s += $2} END {print s + 0}' /tmp/status.prom)
result status_prom "$prom"
[ "$prom" = "$hs_total" ] || fail "Prometheus counts $prom, expected $hs_total"
ls -ld /run/tlshd-go /run/tlshd-go/status.sock | sed 's/^/    run: /'

# ------------------------------------------------------ 5. roll back ---
systemctl disable --now tlshd-go.service >/dev/null 2>&1
systemctl enable --now tlshd.service >/dev/null 2>&1
result rollback_tlshd_active "$(systemctl is-active tlshd.service)"
[ "$(systemctl show -p Id --value tlshd.service)" = tlshd.service ] || fail "tlshd.service still names $(systemctl show -p Id --value tlshd.service)"
[ "$(systemctl is-active tlshd.service)" = active ] || fail "tlshd.service not active after rollback"
[ "$(systemctl is-active tlshd-go.service)" = inactive ] || fail "tlshd-go.service still running"
nvme_connect "$NQN"
result rollback_c3_connect_rc "$CONNECT_RC"
if ((CONNECT_RC == 0)); then nvme disconnect -n "$NQN" >/dev/null; else fail "connect through tlshd after rollback: rc $CONNECT_RC"; fi

# --------------------------------------------------------- 6. purge ---
# An operator who enabled tlshd-go again and then purged must not be left
# with a dangling tlshd.service alias.
systemctl enable tlshd-go.service >/dev/null 2>&1
systemctl disable tlshd.service >/dev/null 2>&1
dpkg --purge tlshd-go >/tmp/purge.log 2>&1
rc=$?
sed 's/^/    purge: /' /tmp/purge.log
result purge_rc "$rc"
left=0
while read -r f; do
	[ -f "$f" ] || [ -L "$f" ] && { say "left behind: $f"; left=$((left + 1)); }
done </tmp/deb.files
[ -e /etc/tlshd-go ] && { say "left behind: /etc/tlshd-go"; left=$((left + 1)); }
result purge_left_files "$left"
((left == 0)) || fail "purge left $left files"
links=$(find /etc/systemd/system -lname '*tlshd-go*' | wc -l)
result purge_left_links "$links"
((links == 0)) || fail "purge left links to tlshd-go.service: $(find /etc/systemd/system -lname '*tlshd-go*')"
systemctl daemon-reload
systemctl enable --now tlshd.service >/dev/null 2>&1
result tlshd_active_after_purge "$(systemctl is-active tlshd.service)"
[ "$(systemctl is-active tlshd.service)" = active ] || fail "tlshd.service not active after the purge"
systemctl disable --now tlshd.service >/dev/null 2>&1
finish
