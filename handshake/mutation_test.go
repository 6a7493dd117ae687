package handshake

import (
	"crypto"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
)

// peerDeadline bounds every read and write of a test's remote peer
// (socketPair): when the daemon under test is broken (a mutant of
// tests/mutation, or a real bug) and never answers, the peer's handshake
// fails and the test with it, instead of hanging until go test's own
// timeout. The daemon's requests in these tests finish in well under a
// second; the bound only needs to be far above that on a loaded machine.
const peerDeadline = 20 * time.Second

// Tests written to kill mutants that lived in tests/mutation (issue 11,
// tests/mutation/needs-tests.txt).

// detachCounter is a memKeyring whose Attach hands out a detach that
// counts its calls.
type detachCounter struct {
	*memKeyring
	attached, detached atomic.Int32
}

func (k *detachCounter) Attach(rings []config.Keyring, request int32) ([]int32, func(), error) {
	out, _, err := k.memKeyring.Attach(rings, request)
	k.attached.Add(1)
	return out, func() { k.detached.Add(1) }, err
}

// TestRequestBookkeeping: every request, served or failed, detaches the
// keyrings it attached, once, and is counted in Stats.
func TestRequestBookkeeping(t *testing.T) {
	td := newTestDaemon(t, "")
	td.keys.add(1, nvmeID, key32(1))
	keys := &detachCounter{memKeyring: td.keys}
	td.Keyring = keys
	td.start()

	consumer, peer := socketPair(t)
	p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
	go peerClient(nvmeID, key32(1))(t, peer)
	if r := wait(t, p); r.Status != 0 {
		t.Fatalf("served request: status %v\n%s", r.Status, td.logs)
	}
	consumer, peer = socketPair(t)
	p = td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
	go peerClient(nvmeID, key32(2))(t, peer) // wrong key: EACCES
	if r := wait(t, p); r.Status == 0 {
		t.Fatalf("failed request: status 0\n%s", td.logs)
	}
	td.stop(t) // the workers are done: their counts are final
	if a, d := keys.attached.Load(), keys.detached.Load(); a != 2 || d != 2 {
		t.Errorf("keyrings attached %d and detached %d times for 2 requests", a, d)
	}
	if s := td.Stats(); s.Served != 1 || s.Failed != 1 {
		t.Errorf("Stats %+v, want 1 served and 1 failed", s)
	}
}

// TestPSKHashAndIdentity: an NVMe identity names the hash and the NQNs a
// policy rule may test; any other identity names neither.
func TestPSKHashAndIdentity(t *testing.T) {
	if h := pskHash(nvmeID, make([]byte, 48)); h != crypto.SHA256 {
		t.Errorf("NVMe hh 01 with a 48-byte key: %v, want SHA-256", h)
	}
	var m config.Match
	fillIdentity(&m, nvmeID)
	if m.PSKIdentity != nvmeID ||
		m.HostNQN != "nqn.2014-08.org.nvmexpress:uuid:36ebf5a9-1df9-47b3-a6d0-e9ba32e428a2" ||
		m.SubsysNQN != "nqn.2024-01.io.example:target" {
		t.Errorf("fillIdentity(NVMe identity) = %+v", m)
	}
	m = config.Match{}
	fillIdentity(&m, "plain identity")
	if m.PSKIdentity != "plain identity" || m.HostNQN != "" || m.SubsysNQN != "" {
		t.Errorf("fillIdentity(plain identity) = %+v", m)
	}
}
