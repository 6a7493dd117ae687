package handshake

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
)

func TestFDsNeeded(t *testing.T) {
	if got := FDsNeeded(64); got != 5*64+66 {
		t.Errorf("FDsNeeded(64) = %d", got)
	}
	for _, limit := range []uint64{0, 63, 64, 65, 66, 69, 70, 71, 1024, 16384, 1 << 20} {
		n := MaxConcurrentFor(limit)
		if n > 0 && FDsNeeded(n) > limit || FDsNeeded(n+1) <= limit {
			t.Errorf("MaxConcurrentFor(%d) = %d: needs %d, and %d needs %d", limit, n, FDsNeeded(n), n+1, FDsNeeded(n+1))
		}
	}
	for limit, want := range map[uint64]int{0: 0, 63: 0, 65: 0, 66: 0, 70: 0, 71: 1, 75: 1, 76: 2} {
		if got := MaxConcurrentFor(limit); got != want {
			t.Errorf("MaxConcurrentFor(%d) = %d, want %d", limit, got, want)
		}
	}
	if err := CheckFDLimit(64, 1024); err != nil {
		t.Error(err)
	}
	if err := CheckFDLimit(64, FDsNeeded(64)); err != nil {
		t.Errorf("a limit of exactly what 64 need: %v", err)
	}
	if err := CheckFDLimit(64, FDsNeeded(64)-1); err == nil {
		t.Error("a limit one short of what 64 need was accepted")
	}
	err := CheckFDLimit(4096, 16384)
	for _, want := range []string{"needs 20546 file descriptors", "(5 per slot: 1 for a handshake in flight, 4 for the queue; 66 more)", "at most 3263", "at least 20546"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFDLimit(4096, 16384) = %v, want it to say %q", err, want)
		}
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own
}

// TestFDBudgetHolds fills every peer slot and the whole queue with
// handshakes whose peers stay silent and counts the descriptors the daemon
// then holds: one per request (fdsPerHandshake), as FDsNeeded and
// peerLimit budget.
func TestFDBudgetHolds(t *testing.T) {
	const limit = 2
	td := newTestDaemon(t, "[global]\nmax_concurrent = 2\n")
	td.PeerSlots = limit
	td.keys.add(1, nvmeID, key32(1))
	// More requests than slots and queue hold: the rest stay pending in
	// the (fake) kernel, costing us nothing.
	total := limit + queueFactor*limit + 2 + 3
	for range total {
		consumer, _ := socketPair(t) // the peer never speaks
		td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
	}
	before := openFDs(t)
	td.start()
	deadline := time.Now().Add(5 * time.Second)
	wantQueued := queueFactor*limit + 2 // the queue, the dispatcher's and the accept thread's
	for {
		s := td.Stats()
		if s.InFlight == limit && s.Queued == wantQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saturated: %+v, want %d in flight and %d queued", s, limit, wantQueued)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the handshakes reach their read
	held := openFDs(t) - before
	budget := FDsNeeded(limit) - FDReserve
	t.Logf("descriptors held with %d in flight and %d queued: %d (budget for requests %d, with reserve %d)",
		limit, wantQueued, held, budget, FDsNeeded(limit))
	if held > int(budget) {
		t.Errorf("the daemon holds %d descriptors for requests, more than FDsNeeded budgets (%d)", held, budget)
	}
	if held != fdsPerHandshake*limit+wantQueued {
		t.Errorf("held %d descriptors; the accounting (%d per handshake in flight, 1 per queued request) is off", held, fdsPerHandshake)
	}
}
