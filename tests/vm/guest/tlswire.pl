#!/usr/bin/perl
# tlswire.pl PORT OUT READY [IFNAME|IFINDEX]: what the TLS handshakes on
# TCP port PORT put on the wire of interface IFNAME (default lo; run it in
# the interface's network namespace), one line per plaintext message,
# for scenarios that must judge a handshake from evidence the daemon does
# not write itself (not its log). Captured with an AF_PACKET socket bound
# to lo (perl-base only: no tcpdump in the image). READY is created once
# the socket is bound; SIGTERM ends it. Lines (cport = the client's port):
#   CH cport=N suites=1301,1302 modes=0,1 groups=29 psk_ids=1 psk_id="NVMe0R01 <host> <sub>" sni="name"
#   SH cport=N hrr=0|1 suite=1302 key_share=0|1 psk=0|1 sel=0
#   ALERT cport=N from=client|server level=2 desc=40
# Only the first segments of each direction are read, up to the first
# record that is not a plaintext handshake, alert or ChangeCipherSpec:
# ServerHello and ClientHello (and an alert refusing a ClientHello) are
# the first records of their flights, in one segment on lo (MTU 64 KiB;
# give another interface a large MTU). A first segment that is no TLS
# record (RPC-with-TLS sends its AUTH_TLS probe in the clear first) is
# skipped. Off lo, frames the host sends (PACKET_OUTGOING) are read too:
# on lo each frame shows twice, so only the incoming copy is read there.
use strict;
use warnings;

my ($port, $out, $ready, $ifname) = @ARGV;
die "usage: tlswire.pl PORT OUT READY [IFNAME]\n" unless defined $ready;
$ifname //= 'lo';
# An interface index may be given instead of a name: /sys/class/net shows
# the namespace sysfs was mounted in, not necessarily this one.
my $ifindex = $ifname =~ /^\d+$/ ? $ifname : $ifname eq 'lo' ? 1 : 0;
if ($ifname !~ /^\d+$/ && open(my $f, '<', "/sys/class/net/$ifname/ifindex")) { $ifindex = <$f> + 0; close $f; }
die "tlswire: no interface $ifname\n" unless $ifindex;
# AF_PACKET = 17, SOCK_RAW = 3, protocol htons(ETH_P_ALL = 3)
socket(my $s, 17, 3, 0x0300) or die "tlswire: socket: $!\n";
# struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]
bind($s, pack('S n i S C C a8', 17, 3, $ifindex, 0, 0, 0, '')) or die "tlswire: bind: $!\n";
open(my $o, '>', $out) or die "tlswire: $out: $!\n";
select($o);
$| = 1;
open(my $r, '>', $ready) or die "tlswire: $ready: $!\n";
close $r;
$SIG{TERM} = sub { exit 0 };
my $HRR = pack('H*', 'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c');

my %done;   # "c<cport>" / "s<cport>": that direction is past its plaintext records
while (1) {
	my $from = recv($s, my $buf, 70000, 0);
	next unless defined $from && length($from) >= 11;
	next if $ifindex == 1 && unpack('C', substr($from, 10, 1)) == 4;   # PACKET_OUTGOING: lo shows each frame twice
	next if length($buf) < 54 || unpack('n', substr($buf, 12, 2)) != 0x0800;
	my $ihl = (unpack('C', substr($buf, 14, 1)) & 15) * 4;
	my $tot = unpack('n', substr($buf, 16, 2));
	next if unpack('C', substr($buf, 23, 1)) != 6;   # TCP
	my $t = 14 + $ihl;
	my ($sp, $dp) = unpack('n n', substr($buf, $t, 4));
	next unless $sp == $port || $dp == $port;
	my $srv = $sp == $port;
	my $cport = $srv ? $dp : $sp;
	my $flags = unpack('C', substr($buf, $t + 13, 1));
	if (!$srv && ($flags & 2)) { delete $done{"c$cport"}; delete $done{"s$cport"}; }   # SYN: a new connection
	my $p = $t + (unpack('C', substr($buf, $t + 12, 1)) >> 4) * 4;
	my $end = 14 + $tot;
	next if $p >= $end;
	my $key = ($srv ? 's' : 'c') . $cport;
	next if $done{$key};
	my $pl = substr($buf, $p, $end - $p);
	my ($t0, $v0) = unpack('C C', $pl);
	next unless $t0 >= 20 && $t0 <= 23 && $v0 == 3;   # not TLS (yet)
	$done{$key} = 1;
	my $at = 0;
	while ($at + 5 <= length($pl)) {
		my ($type, $len) = unpack('C x2 n', substr($pl, $at, 5));
		last if $at + 5 + $len > length($pl);
		my $body = substr($pl, $at + 5, $len);
		$at += 5 + $len;
		if ($type == 21 && $len == 2) {
			my ($lvl, $desc) = unpack('C C', $body);
			print "ALERT cport=$cport from=", ($srv ? 'server' : 'client'), " level=$lvl desc=$desc\n";
		} elsif ($type == 22 && $len >= 4) {
			my $ht = unpack('C', $body);
			hello($cport, $ht, substr($body, 4)) if $ht == 1 || $ht == 2;
		} elsif ($type != 20) {
			$at = -1;   # encrypted records from here on
			last;
		}
	}
	delete $done{$key} if $at == length($pl);   # ended on a record boundary: the next segment may hold more
}

sub hello {
	my ($cport, $ht, $m) = @_;
	my $i = 34;   # legacy_version, random
	return if length($m) < $i + 1;
	my $random = substr($m, 2, 32);
	$i += 1 + unpack('C', substr($m, $i, 1));   # legacy_session_id
	my %kv;
	if ($ht == 1) {
		my $n = unpack('n', substr($m, $i, 2));
		$kv{suites} = join(',', map { sprintf '%04x', $_ } unpack('n*', substr($m, $i + 2, $n)));
		$i += 2 + $n;
		$i += 1 + unpack('C', substr($m, $i, 1));   # compression methods
	} else {
		$kv{hrr} = $random eq $HRR ? 1 : 0;
		$kv{suite} = sprintf '%04x', unpack('n', substr($m, $i, 2));
		$i += 3;
		$kv{key_share} = 0;
		$kv{psk} = 0;
	}
	my $elen = length($m) >= $i + 2 ? unpack('n', substr($m, $i, 2)) : 0;
	$i += 2;
	my $eend = $i + $elen;
	while ($i + 4 <= $eend && $eend <= length($m)) {
		my ($et, $el) = unpack('n n', substr($m, $i, 4));
		my $d = substr($m, $i + 4, $el);
		$i += 4 + $el;
		if ($ht == 1 && $et == 45 && $el >= 1) {
			$kv{modes} = join(',', unpack('C*', substr($d, 1, unpack('C', $d))));
		} elsif ($ht == 1 && $et == 51 && $el >= 2) {
			my ($j, @g) = (2);
			while ($j + 4 <= $el) {
				my ($g, $kl) = unpack('n n', substr($d, $j, 4));
				push @g, $g;
				$j += 4 + $kl;
			}
			$kv{groups} = join(',', @g);
		} elsif ($ht == 1 && $et == 0 && $el >= 5) {   # server_name: list length, type 0, name length
			$kv{sni} = '"' . substr($d, 5, unpack('n', substr($d, 3, 2))) . '"';
		} elsif ($ht == 1 && $et == 41 && $el >= 2) {
			my ($j, $il, @id) = (2, unpack('n', $d));
			while ($j + 2 <= 2 + $il) {
				my $l = unpack('n', substr($d, $j, 2));
				push @id, substr($d, $j + 2, $l);
				$j += 2 + $l + 4;
			}
			$kv{psk_ids} = scalar @id;
			$kv{psk_id} = '"' . ($id[0] // '') . '"';
		} elsif ($ht == 2 && $et == 51) {
			$kv{key_share} = 1;
		} elsif ($ht == 2 && $et == 41 && $el == 2) {
			$kv{psk} = 1;
			$kv{sel} = unpack('n', $d);
		}
	}
	if ($ht == 1) {
		$kv{$_} //= '' for qw(modes groups);
		$kv{psk_ids} //= 0;
		$kv{psk_id} //= '""';
		$kv{sni} //= '""';
		print "CH cport=$cport suites=$kv{suites} modes=$kv{modes} groups=$kv{groups} psk_ids=$kv{psk_ids} psk_id=$kv{psk_id} sni=$kv{sni}\n";
	} else {
		$kv{sel} //= '-';
		print "SH cport=$cport hrr=$kv{hrr} suite=$kv{suite} key_share=$kv{key_share} psk=$kv{psk} sel=$kv{sel}\n";
	}
}
