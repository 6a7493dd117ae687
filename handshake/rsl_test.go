package handshake

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/ktls/ktlstest"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/rekey"
)

// limitInstaller models a kernel with (Linux 7.3) or without (6.12)
// TLS_TX_MAX_PAYLOAD_LEN over recordingInstaller, keeping the options.
type limitInstaller struct {
	*recordingInstaller
	hasOption bool
	mu        sync.Mutex
	opts      map[int]ktls.Options
}

func (l *limitInstaller) Install(fd int, tx, rx ktls.Keys, o ktls.Options) error {
	l.mu.Lock()
	if l.opts == nil {
		l.opts = map[int]ktls.Options{}
	}
	l.opts[fd] = o
	l.mu.Unlock()
	if o.TxMaxPayload != 0 && !l.hasOption {
		return fmt.Errorf("ktls: %s: %w (%w)", ktls.StepMaxPayload, unix.ENOPROTOOPT, ktls.ErrNoMaxPayload)
	}
	return l.recordingInstaller.Install(fd, tx, rx, o)
}

func (l *limitInstaller) options(fd int) ktls.Options {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opts[fd]
}

// TestRecordSizeLimitReachesKTLS: the peer's record_size_limit becomes
// TLS_TX_MAX_PAYLOAD_LEN; with it, data larger than the limit reaches the
// peer in records it accepts. Without the option (6.12) the handshake is
// refused with EOPNOTSUPP and a log line that says why; a peer without a
// limit is served on either kernel.
func TestRecordSizeLimitReachesKTLS(t *testing.T) {
	psk := tls13.PSK{Identity: []byte(nvmeID), Key: key32(2), Hash: crypto.SHA256}
	for _, tc := range []struct {
		name       string
		role       genl.MessageType
		hasOption  bool
		peerLimit  int
		policy     string
		wantStatus syscall.Errno
		wantMax    uint16
	}{
		{"server, 7.3, peer limit 512", genl.ServerHello, true, 512, "", 0, 511},
		{"client, 7.3, peer limit 512", genl.ClientHello, true, 512, "[client]\nrecord_size_limit = 16385\n", 0, 511},
		{"server, 6.12, peer limit 512", genl.ServerHello, false, 512, "", syscall.EOPNOTSUPP, 511},
		{"client, 6.12, peer limit 512", genl.ClientHello, false, 512, "[client]\nrecord_size_limit = 1024\n", syscall.EOPNOTSUPP, 511},
		{"server, 6.12, peer limit 16385", genl.ServerHello, false, 16385, "", 0, 0},
		{"server, 6.12, no peer limit", genl.ServerHello, false, 0, "", 0, 0},
		{"client, 6.12, limit not negotiated", genl.ClientHello, false, 512, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDaemon(t, tc.policy)
			inst := &limitInstaller{recordingInstaller: td.inst, hasOption: tc.hasOption}
			td.Installer = inst
			td.keys.add(202, nvmeID, key32(2))
			consumer, peer := socketPair(t)
			td.start()
			params := fakekernel.Params{MessageType: tc.role, Auth: genl.PSK, PeerIdentities: []int32{0}}
			var pc *tls13.Conn
			if tc.role == genl.ClientHello {
				params.PeerIdentities = []int32{202}
				pc = tls13.Server(peer, &tls13.Config{GetPSK: func([]byte) (*tls13.PSK, error) { return &psk, nil }, RecordSizeLimit: tc.peerLimit})
			} else {
				pc = tls13.Client(peer, &tls13.Config{PSKs: []tls13.PSK{psk}, RecordSizeLimit: tc.peerLimit})
			}
			p := td.fk.Submit(int(consumer.Fd()), params)
			if err := pc.Handshake(context.Background()); err != nil {
				t.Fatalf("peer: %v\n%s", err, td.logs)
			}
			r := wait(t, p)
			if got := inst.options(p.FD()).TxMaxPayload; got != tc.wantMax {
				t.Errorf("TxMaxPayload %d, want %d", got, tc.wantMax)
			}
			if r.Status != tc.wantStatus {
				t.Fatalf("DONE status %v, want %v\n%s", r.Status, tc.wantStatus, td.logs)
			}
			td.stop(t) // the handshake line is written after DONE
			if tc.wantStatus != 0 {
				if log := td.logs.String(); !strings.Contains(log, "record_size_limit 512") || !strings.Contains(log, "Linux 7.3") {
					t.Errorf("log does not say why:\n%s", log)
				}
				return
			}
			if want := fmt.Sprintf("peer_record_size_limit=%d", tc.peerLimit); tc.wantMax != 0 && !strings.Contains(td.logs.String(), want) {
				t.Errorf("no %s in the log:\n%s", want, td.logs)
			}
			sendThroughModel(t, td, inst, p.FD(), consumer, peer, pc, tc.wantMax)
		})
	}
}

// sendThroughModel writes 40000 bytes from the consumer's socket as kTLS
// TX would with the installed options, and has the peer read them with
// the keys it handed off, checking each record's size and the checksum.
func sendThroughModel(t *testing.T, td *testDaemon, inst *limitInstaller, fd int, consumer *os.File, peer net.Conn, pc *tls13.Conn, max uint16) {
	t.Helper()
	s, err := pc.Handoff()
	if err != nil {
		t.Fatal(err)
	}
	_, peerRX := rekey.SessionKeys(s)
	rx, err := ktlstest.NewDirection(peerRX)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("record size limit "), 40000/18)
	tx := newKernelRecords(t, td.inst.txInfo(fd))
	if _, err := consumer.Write(tx.d.SealAll(23, data, inst.options(fd).TxMaxPayload)); err != nil {
		t.Fatal(err)
	}
	limit := int(max)
	if limit == 0 {
		limit = ktlstest.MaxPayload
	}
	var got []byte
	records := 0
	for len(got) < len(data) {
		typ, rec, err := rx.ReadRecord(peer)
		if err != nil || typ != 23 {
			t.Fatalf("peer reading record %d: type %d, %v", records, typ, err)
		}
		if len(rec) > limit {
			t.Fatalf("record %d carries %d bytes, more than the peer's limit allows (%d)", records, len(rec), limit)
		}
		got = append(got, rec...)
		records++
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("data differs")
	}
	t.Logf("%d bytes in %d records of at most %d bytes", len(data), records, limit)
}
