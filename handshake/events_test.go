package handshake

import (
	"sync"
	"syscall"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
)

func TestEventsOnePerDone(t *testing.T) {
	td := newTestDaemon(t, "[server]\nreject = true\n")
	var mu sync.Mutex
	var got []Event
	td.Events = func(ev Event) { mu.Lock(); got = append(got, ev); mu.Unlock() }
	consumer, _ := socketPair(t)
	td.start()
	r := wait(t, td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK}))
	td.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(got), got)
	}
	ev := got[0]
	if ev.Status != r.Status || ev.Status != syscall.EACCES || ev.Role != "server" || ev.Auth != "psk" || ev.Duration <= 0 {
		t.Errorf("event %+v, DONE status %v", ev, r.Status)
	}
}
