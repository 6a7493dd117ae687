package handshake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// hello is a ClientHello-shaped first flight: one handshake message of
// bodyLen bytes, cut into records of at most recLen body bytes.
func hello(bodyLen, recLen int) []byte {
	msg := append([]byte{1, byte(bodyLen >> 16), byte(bodyLen >> 8), byte(bodyLen)}, bytes.Repeat([]byte{0xaa}, bodyLen)...)
	var out []byte
	for len(msg) > 0 {
		n := min(recLen, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestFirstMessage(t *testing.T) {
	alert := []byte{21, 3, 3, 0, 2, 2, 40}
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"whole", hello(300, 1<<14), true},
		{"across records", hello(300, 7), true},
		{"header across records", hello(300, 2), true},
		{"empty body", hello(0, 16), true},
		{"one byte short", hello(300, 1<<14)[:5+4+299], false},
		{"header only", hello(300, 1<<14)[:5], false},
		{"alert first", append(alert, hello(10, 100)...), true},
		{"only alerts", bytes.Repeat(alert, 3), false},
		{"empty handshake record", append([]byte{22, 3, 1, 0, 0}, hello(1, 100)...), true},
	} {
		// Whole, and byte by byte: the framing must not depend on how
		// reads split the stream.
		var f firstMessage
		if got := f.feed(tc.in); got != tc.want {
			t.Errorf("%s: feed(all) = %v, want %v", tc.name, got, tc.want)
		}
		var g firstMessage
		got := false
		for i := range tc.in {
			got = g.feed(tc.in[i : i+1])
		}
		if got != tc.want {
			t.Errorf("%s: byte by byte = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzFirstMessage: any split of the stream gives the verdict the whole
// stream gives, and nothing panics.
func FuzzFirstMessage(f *testing.F) {
	f.Add(hello(30, 7), uint8(3))
	f.Add([]byte{21, 3, 3, 0, 2, 2, 40, 22, 3, 1, 0, 4, 1, 0, 0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		var whole, split firstMessage
		want := whole.feed(in)
		n := int(step)%16 + 1
		got := false
		for len(in) > 0 {
			k := min(n, len(in))
			got = split.feed(in[:k])
			in = in[k:]
		}
		if got != want {
			t.Fatalf("split verdict %v, whole %v", got, want)
		}
	})
}

// submitSilent submits a request whose peer connects and says nothing;
// the peer stays open until the test ends.
func submitSilent(t *testing.T, td *testDaemon, role genl.MessageType) *fakekernel.Pending {
	consumer, peer := socketPair(t)
	t.Cleanup(func() { peer.Close() })
	p := fakekernel.Params{MessageType: role, Auth: genl.PSK, Timeout: 9 * time.Second}
	if role == genl.ClientHello {
		p.PeerIdentities = []int32{1}
		// The peer reads our ClientHello and never answers.
		go io.Copy(io.Discard, peer)
	}
	return td.fk.Submit(int(consumer.Fd()), p)
}

// doneYet reports whether p got its DONE (consuming it).
func doneYet(p *fakekernel.Pending) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// TestSilentPeersHoldNoWorkSlot: with one work slot, silent peers (a
// server waiting for a ClientHello, a client for a ServerHello) do not
// keep a real handshake from running, and end with ETIMEDOUT at the
// first-flight deadline, saying so.
func TestSilentPeersHoldNoWorkSlot(t *testing.T) {
	td := newTestDaemon(t, "[global]\nmax_concurrent = 1\nfirst_flight_timeout = \"2s\"\n")
	td.keys.add(1, nvmeID, key32(1))
	td.start()
	var silent []*fakekernel.Pending
	for range 4 {
		silent = append(silent, submitSilent(t, td, genl.ServerHello))
	}
	silent = append(silent, submitSilent(t, td, genl.ClientHello))
	// Every silent request is in its handshake before the real one comes.
	// They are all in flight, and none holds the one work slot.
	waitStats(t, td.Daemon, func(s Stats) bool { return s.InFlight == len(silent) && s.Working == 0 })
	consumer, peer := socketPair(t)
	real := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, Timeout: 9 * time.Second})
	go peerClient(nvmeID, key32(1))(t, peer)
	if r := wait(t, real); r.Status != 0 {
		t.Fatalf("real handshake: status %v\n%s", r.Status, td.logs)
	}
	// The real one did not wait for the silent ones' deadline.
	for i, p := range silent {
		select {
		case r := <-p.Done():
			t.Errorf("silent peer %d got DONE (%v) before the real handshake finished", i, r.Status)
		default:
		}
	}
	for i, p := range silent {
		if r := wait(t, p); r.Status != syscall.ETIMEDOUT {
			t.Errorf("silent peer %d: status %v, want ETIMEDOUT", i, r.Status)
		}
	}
	// The log lines follow the DONEs.
	for _, want := range []string{"no complete ClientHello from the peer within first_flight_timeout (2s)",
		"no complete ServerHello from the peer within first_flight_timeout (2s)"} {
		waitLog(t, td.logs, want)
	}
	td.stop(t) // finish closes each fd just after its DONE
	if n := td.fk.OpenFDs(); n != 0 {
		t.Errorf("%d handed-out fds still open", n)
	}
}

// TestTricklingPeer: a peer that sends its ClientHello a byte at a time
// does not get past the first-flight deadline, though every byte it sends
// would reset an idle timer.
func TestTricklingPeer(t *testing.T) {
	td := newTestDaemon(t, "[global]\nfirst_flight_timeout = \"1s\"\n")
	td.start()
	consumer, peer := socketPair(t)
	defer peer.Close()
	p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, Timeout: 9 * time.Second})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range hello(200, 1<<14) {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := peer.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	if r := wait(t, p); r.Status != syscall.ETIMEDOUT {
		t.Errorf("status %v, want ETIMEDOUT\n%s", r.Status, td.logs)
	}
	// The log line follows the DONE.
	waitLog(t, td.logs, "no complete ClientHello")
}

// TestDrain: on shutdown a handshake in flight may finish within
// drain_timeout; one that does not gets ETIMEDOUT when it passes; the log
// says which; requests still pending in the kernel are not taken.
func TestDrain(t *testing.T) {
	t.Run("grace passes", func(t *testing.T) {
		td := newTestDaemon(t, "[global]\nfirst_flight_timeout = \"8s\"\ndrain_timeout = \"300ms\"\nhandshake_timeout = \"9s\"\n")
		td.start()
		p := submitSilent(t, td, genl.ServerHello)
		waitStats(t, td.Daemon, func(s Stats) bool { return s.InFlight == 1 })
		td.stop(t)
		if r := wait(t, p); r.Status != syscall.ETIMEDOUT {
			t.Errorf("status %v, want ETIMEDOUT", r.Status)
		}
		logs := td.logs.String()
		for _, want := range []string{"draining", "in_flight=1", "drain_timeout passed", "the daemon is stopping"} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %q:\n%s", want, logs)
			}
		}
	})
	t.Run("finishes within grace", func(t *testing.T) {
		td := newTestDaemon(t, "[global]\ndrain_timeout = \"8s\"\n")
		td.keys.add(1, nvmeID, key32(1))
		td.start()
		consumer, peer := socketPair(t)
		p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, Timeout: 9 * time.Second})
		waitStats(t, td.Daemon, func(s Stats) bool { return s.InFlight == 1 })
		stopped := make(chan struct{})
		go func() { td.stop(t); close(stopped) }()
		// The daemon has stopped taking requests: this one stays pending.
		c2, _ := socketPair(t)
		waitLog(t, td.logs, "draining")
		late := td.fk.Submit(int(c2.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
		go peerClient(nvmeID, key32(1))(t, peer)
		if r := wait(t, p); r.Status != 0 {
			t.Errorf("status %v, want 0\n%s", r.Status, td.logs)
		}
		<-stopped
		if !strings.Contains(td.logs.String(), "drained: every handshake in flight finished") {
			t.Errorf("log:\n%s", td.logs)
		}
		if td.fk.Queued() != 1 || doneYet(late) {
			t.Errorf("a request submitted while draining was taken")
		}
	})
}

// TestDrainX509: an x509 handshake cut by the drain grace (crypto/tls
// returns the context's error, not its cause) still reports the drain:
// ETIMEDOUT, and its log line says the daemon is stopping.
func TestDrainX509(t *testing.T) {
	p := newPKI(t)
	td := newTestDaemon(t, "[global]\nfirst_flight_timeout = \"8s\"\ndrain_timeout = \"300ms\"\nhandshake_timeout = \"9s\"\n"+p.policy("", ""))
	td.start()
	consumer, peer := socketPair(t)
	t.Cleanup(func() { peer.Close() })
	go io.Copy(io.Discard, peer) // reads our ClientHello, never answers
	pend := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth, PeerName: "localhost", Timeout: 9 * time.Second})
	waitStats(t, td.Daemon, func(s Stats) bool { return s.InFlight == 1 })
	td.stop(t)
	if r := wait(t, pend); r.Status != syscall.ETIMEDOUT {
		t.Errorf("status %v, want ETIMEDOUT\n%s", r.Status, td.logs)
	}
	lines := 0
	for _, l := range strings.Split(td.logs.String(), "\n") {
		if strings.Contains(l, "msg=handshake") {
			lines++
			if !strings.Contains(l, "the daemon is stopping") {
				t.Errorf("the handshake's line does not name the drain: %s", l)
			}
		}
	}
	if lines != 1 {
		t.Errorf("%d handshake lines, want 1:\n%s", lines, td.logs)
	}
}

// TestAttachFailureLogged: a keyring that cannot be linked is logged and
// does not fail the request; the credentials step finds the key or not.
func TestAttachFailureLogged(t *testing.T) {
	td := newTestDaemon(t, "")
	td.keys.add(1, nvmeID, key32(1))
	td.keys.attachFail = errors.New("keyctl_link .nfs: permission denied")
	td.start()
	consumer, peer := socketPair(t)
	p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, Timeout: 9 * time.Second})
	go peerClient(nvmeID, key32(1))(t, peer)
	if r := wait(t, p); r.Status != 0 {
		t.Errorf("status %v, want 0\n%s", r.Status, td.logs)
	}
	td.stop(t)
	if s := td.logs.String(); !strings.Contains(s, "linking keyrings") || !strings.Contains(s, "permission denied") {
		t.Errorf("no warning about the keyring:\n%s", s)
	}
}

func waitStats(t testing.TB, d *Daemon, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(d.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", d.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func waitLog(t *testing.T, b *testtool.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", s, b)
		}
		time.Sleep(time.Millisecond)
	}
}

// scriptedDaemon runs a Daemon against a doneKernel whose READY never
// comes: whatever gets served is found by retries and sweeps alone.
func scriptedDaemon(t *testing.T, k Kernel, sweep time.Duration) (*Daemon, *testtool.Buffer) {
	t.Helper()
	logs := &testtool.Buffer{}
	holder := config.NewHolder(mustPolicy(t, "[global]\nhandshake_timeout = \"1s\"\nfirst_flight_timeout = \"200ms\"\ndrain_timeout = \"0s\"\n"))
	d := &Daemon{Kernel: k, Ready: errReady(make(chan error)), Keyring: newMemKeyring(), Installer: &recordingInstaller{},
		Policy: holder.Load, Log: slog.New(slog.NewTextHandler(logs, nil)), Sweep: sweep}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return d, logs
}

func waitDones(t *testing.T, k *doneKernel, n int) []genl.Done {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(k.done()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d DONEs, want %d", len(k.done()), n)
		}
		time.Sleep(time.Millisecond)
	}
	return k.done()
}

// TestAcceptRetry: an ACCEPT that fails for a passing reason is retried
// after a backoff, without waiting for a READY (which never comes here,
// and the sweep is an hour away), so the request behind it is served.
func TestAcceptRetry(t *testing.T) {
	fd := tcpFD(t)
	k := &doneKernel{accepts: []acceptReply{
		{req: genl.Request{FD: -1}, err: fmt.Errorf("%w: kernel: %w", genl.ErrRetry, unix.EMFILE)},
		{req: genl.Request{FD: -1}, err: fmt.Errorf("%w: receiving: %w", genl.ErrRetry, unix.EINTR)},
		{req: genl.Request{FD: fd, MessageType: genl.ServerHello, Auth: genl.PSK}},
	}}
	d, logs := scriptedDaemon(t, k, time.Hour)
	dones := waitDones(t, k, 1)
	if dones[0].FD != fd {
		t.Errorf("DONE for fd %d, want %d", dones[0].FD, fd)
	}
	if s := d.Stats(); s.AcceptRetries != 2 {
		t.Errorf("stats %+v, want 2 retries", s)
	}
	if !strings.Contains(logs.String(), "ACCEPT failed for a passing reason; retrying") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestSweepWithoutReady: a request that arrives without a READY (lost,
// or never sent) is taken by the periodic sweep, and Alive is called
// after every sweep.
func TestSweepWithoutReady(t *testing.T) {
	k := &doneKernel{}
	var alive atomic.Int32
	logs := &testtool.Buffer{}
	holder := config.NewHolder(mustPolicy(t, "[global]\nhandshake_timeout = \"1s\"\nfirst_flight_timeout = \"200ms\"\n"))
	d := &Daemon{Kernel: k, Ready: errReady(make(chan error)), Keyring: newMemKeyring(), Installer: &recordingInstaller{},
		Policy: holder.Load, Log: slog.New(slog.NewTextHandler(logs, nil)), Sweep: 20 * time.Millisecond,
		Alive: func() { alive.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	for alive.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	fd := tcpFD(t)
	k.mu.Lock()
	k.accepts = append(k.accepts, acceptReply{req: genl.Request{FD: fd, MessageType: genl.ServerHello, Auth: genl.PSK}})
	k.mu.Unlock()
	if dones := waitDones(t, k, 1); dones[0].FD != fd {
		t.Errorf("DONE %+v", dones)
	}
}

// TestBadReplies: a reply without SOCKFD is logged and counted and the
// sweep goes on; a truncated one that names a socket gets DONE (EIO) on
// it; the request after them is served. Nothing leaks: every fd we were
// given is closed.
func TestBadReplies(t *testing.T) {
	truncFD, goodFD := tcpFD(t), tcpFD(t)
	k := &doneKernel{accepts: []acceptReply{
		{req: genl.Request{FD: -1}, err: fmt.Errorf("decoding: %w", genl.ErrNoSockFD)},
		{req: genl.Request{FD: truncFD}, err: fmt.Errorf("%w (8192 bytes received)", genl.ErrTruncated)},
		{req: genl.Request{FD: goodFD, MessageType: genl.ServerHello, Auth: genl.PSK}},
	}}
	d, logs := scriptedDaemon(t, k, time.Hour)
	dones := waitDones(t, k, 2)
	status := map[int32]syscall.Errno{}
	for _, dn := range dones {
		status[dn.FD] = dn.Status
	}
	if status[truncFD] != syscall.EIO {
		t.Errorf("truncated reply: DONE %v, want EIO (%+v)", status[truncFD], dones)
	}
	if _, ok := status[goodFD]; !ok {
		t.Errorf("the request after the bad replies got no DONE: %+v", dones)
	}
	if s := d.Stats(); s.BadReplies != 2 {
		t.Errorf("stats %+v, want 2 bad replies", s)
	}
	// The request's log line follows its DONE.
	for _, want := range []string{"ACCEPT reply unusable and without a socket", "no SOCKFD", "decoding ACCEPT reply", "truncated"} {
		waitLog(t, logs, want)
	}
	waitDones(t, k, 2)
	for _, fd := range []int32{truncFD, goodFD} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			t.Errorf("fd %d still open after DONE", fd)
		}
	}
}

// panicKernel panics in the first Accept, and in the first Done before
// recording it.
type panicKernel struct {
	*doneKernel
	accepted, done atomic.Bool
}

func (k *panicKernel) Accept() (genl.Request, error) {
	if !k.accepted.Swap(true) {
		panic("accept exploded")
	}
	return k.doneKernel.Accept()
}

func (k *panicKernel) Done(d genl.Done) error {
	if !k.done.Swap(true) {
		panic("done exploded")
	}
	return k.doneKernel.Done(d)
}

// TestPanicsElsewhere: a panic on the accept thread (in ACCEPT, in
// Alive), in DONE or in an Events callback is logged with its stack on one line, and every request
// still gets exactly one DONE.
func TestPanicsElsewhere(t *testing.T) {
	fd1, fd2 := tcpFD(t), tcpFD(t)
	k := &panicKernel{doneKernel: &doneKernel{accepts: []acceptReply{
		{req: genl.Request{FD: fd1, MessageType: genl.ServerHello, Auth: genl.PSK}},
		{req: genl.Request{FD: fd2, MessageType: genl.ServerHello, Auth: genl.PSK}},
	}}}
	logs := &testtool.Buffer{}
	holder := config.NewHolder(mustPolicy(t, "[global]\nhandshake_timeout = \"1s\"\nfirst_flight_timeout = \"200ms\"\n"))
	var events atomic.Int32
	var alive atomic.Bool
	d := &Daemon{Kernel: k, Ready: errReady(make(chan error)), Keyring: newMemKeyring(), Installer: &recordingInstaller{},
		Policy: holder.Load, Log: slog.New(slog.NewTextHandler(logs, nil)), Sweep: 20 * time.Millisecond,
		Alive: func() {
			if !alive.Swap(true) {
				panic("alive exploded")
			}
		},
		Events: func(Event) {
			if events.Add(1) == 1 {
				panic("events exploded")
			}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	dones := waitDones(t, k.doneKernel, 2)
	cancel()
	<-done
	seen := map[int32]int{}
	for _, dn := range k.doneKernel.done() {
		seen[dn.FD]++
	}
	if seen[fd1] != 1 || seen[fd2] != 1 || len(seen) != 2 {
		t.Errorf("DONEs %+v, want one each for %d and %d", dones, fd1, fd2)
	}
	s := logs.String()
	for _, where := range []string{"accept exploded", "alive exploded", "done exploded", "events exploded"} {
		line := ""
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "panic recovered") && strings.Contains(l, where) {
				line = l
			}
		}
		if line == "" || !strings.Contains(line, "goroutine ") || !strings.Contains(line, ".go:") {
			t.Errorf("no one-line panic with a stack for %q:\n%s", where, s)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("a log line that is not a record (a stack split over lines?): %q", l)
		}
	}
	if st := d.Stats(); st.Panics != 4 {
		t.Errorf("stats %+v, want 4 panics", st)
	}
}

func TestFlattenStack(t *testing.T) {
	got := flattenStack([]byte("goroutine 1 [running]:\nmain.f()\n\t/x/main.go:3 +0x1\nmain.main()\n\t/x/main.go:7 +0x2\n"))
	want := "goroutine 1 [running]: | main.f() at /x/main.go:3 +0x1 | main.main() at /x/main.go:7 +0x2"
	if got != want {
		t.Errorf("flattenStack = %q, want %q", got, want)
	}
}

// TestPeerConnGivesSlotBack: a read blocked on the peer holds no work
// slot; the slot is held again once the read returns.
func TestPeerConnGivesSlotBack(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	work := newSlots(1)
	work.acquire(context.Background())
	p := newPeerConn(a, work, "ClientHello", 0)
	read := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 10))
		read <- err
	}()
	// Another request can take the only slot while the read blocks.
	if err := work.acquire(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal("the blocked read kept its work slot")
	}
	b.Write([]byte("x"))
	select {
	case <-read:
		t.Fatal("the read returned without a work slot")
	case <-time.After(20 * time.Millisecond):
	}
	work.release()
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if len(work) != 1 {
		t.Errorf("%d slots held after the read, want 1", len(work))
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestPeerLimit: the peer slots follow RLIMIT_NOFILE, between
// max_concurrent and maxPeerFactor × max_concurrent.
func TestPeerLimit(t *testing.T) {
	for _, tc := range []struct {
		work, queue int
		nofile      uint64
		want        int
	}{
		{64, 256, 16384, 64 * maxPeerFactor},
		{64, 256, 3000, (3000 - fdReserve - 256) / fdsPerHandshake},
		{64, 256, 360, 64},
		{8, 32, 1 << 20, 8 * maxPeerFactor},
		{1, 4, 0, 1},
	} {
		if got := peerLimit(tc.work, tc.queue, tc.nofile); got != tc.want {
			t.Errorf("peerLimit(%d, %d, %d) = %d, want %d", tc.work, tc.queue, tc.nofile, got, tc.want)
		}
	}
	// The limit the budget starts from is the process's soft limit.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if got := noFileLimit(); got != rl.Cur {
		t.Errorf("noFileLimit() = %d, want the soft RLIMIT_NOFILE %d", got, rl.Cur)
	}
}

// TestEMFILERealLimit lowers RLIMIT_NOFILE for real, in a child process
// (the limit is per process). With one descriptor left the kernel (here
// the fake one) installs the socket and the handshake needs no other: it
// is served. With none left the kernel cannot install it and completes
// the request with EIO itself; ACCEPT fails with EMFILE and is retried.
// With the limit restored the next request is served.
func TestEMFILERealLimit(t *testing.T) {
	if os.Getenv("TLSHD_EMFILE_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEMFILERealLimit$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "TLSHD_EMFILE_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestEMFILERealLimit") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	td := newTestDaemon(t, "[global]\nhandshake_timeout = \"2s\"\nfirst_flight_timeout = \"1s\"\n")
	td.keys.add(1, nvmeID, key32(1))
	idle := make(chan struct{}, 1)
	td.Alive = func() {
		select {
		case idle <- struct{}{}:
		default:
		}
	}
	c1, p1 := socketPair(t)
	c2, p2 := socketPair(t)
	c3, p3 := socketPair(t)
	defer p1.Close()
	defer p2.Close()
	td.start()
	<-idle

	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Fatal(err)
		}
	}
	defer restore()
	// leave sets the limit so that exactly n descriptors are free.
	var fillers []int
	leave := func(n int) {
		for _, fd := range fillers {
			unix.Close(fd)
		}
		fillers = nil
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		high := 0
		for _, e := range entries {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				high = max(high, fd)
			}
		}
		lim := unix.Rlimit{Cur: uint64(high + 1 + n), Max: orig.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		// Fill the holes below the highest fd.
		for {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				break
			}
			fillers = append(fillers, fd)
		}
		for range n {
			unix.Close(fillers[len(fillers)-1])
			fillers = fillers[:len(fillers)-1]
		}
	}

	leave(1)
	pend1 := td.fk.Submit(int(c1.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
	go peerClient(nvmeID, key32(1))(t, p1)
	r1 := wait(t, pend1)
	// finish closes the fd right after DONE: let it, or leave(0) would
	// count it as taken.
	for deadline := time.Now().Add(10 * time.Second); td.fk.OpenFDs() != 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	leave(0)
	r2 := wait(t, td.fk.Submit(int(c2.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK}))
	waitStats(t, td.Daemon, func(s Stats) bool { return s.AcceptRetries > 0 })
	for _, fd := range fillers {
		unix.Close(fd)
	}
	restore()
	p := td.fk.Submit(int(c3.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK})
	go peerClient(nvmeID, key32(1))(t, p3)
	r3 := wait(t, p)
	if r1.Status != 0 || r2.Status != syscall.EIO || r3.Status != 0 {
		t.Errorf("statuses: one fd left %v (want 0), none %v (want EIO from the kernel), restored %v (want 0)\n%s",
			r1.Status, r2.Status, r3.Status, td.logs)
	}
	td.stop(t) // every line is written
	if s := td.logs.String(); !strings.Contains(s, "too many open files") || !strings.Contains(s, "ACCEPT failed for a passing reason") {
		t.Errorf("log:\n%s", s)
	}
	if n := td.fk.OpenFDs(); n != 0 {
		t.Errorf("%d handed-out fds still open", n)
	}
}

// TestDispatchPanicGetsDone: a panic while dispatching a queued request
// (here a peer budget whose channel was closed, so that acquire panics)
// is logged with its stack, and the request, which no handshake owns
// yet, still gets its DONE (EIO) and leaves the queue count.
func TestDispatchPanicGetsDone(t *testing.T) {
	k := &doneKernel{}
	logs := &testtool.Buffer{}
	d := &Daemon{Kernel: k, Log: slog.New(slog.NewTextHandler(logs, nil))}
	fd := tcpFD(t)
	d.queued = 1
	broken := newSlots(1)
	close(broken)
	var wg sync.WaitGroup
	d.dispatchOne(context.Background(), accepted{req: genl.Request{FD: fd, MessageType: genl.ServerHello, Auth: genl.PSK}, at: time.Now()},
		broken, newSlots(1), nil, &wg)
	wg.Wait()
	dones := k.done()
	if len(dones) != 1 || dones[0].FD != fd || dones[0].Status != syscall.EIO {
		t.Fatalf("DONEs %+v, want one EIO for fd %d\n%s", dones, fd, logs)
	}
	if d.queued != 0 {
		t.Errorf("queued %d after the DONE, want 0", d.queued)
	}
	if s := logs.String(); !strings.Contains(s, "panic recovered") || !strings.Contains(s, "dispatching a request") || !strings.Contains(s, "goroutine ") {
		t.Errorf("no panic line with its stack:\n%s", s)
	}
}
