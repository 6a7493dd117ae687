package genl

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func readyMsg(t *testing.T, class uint32) genetlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(acceptHandlerClass, class)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return genetlink.Message{Header: genetlink.Header{Command: cmdReady, Version: 1}, Data: b}
}

func TestListenResolvesTlshdGroup(t *testing.T) {
	gc := genltest.Dial(genltest.ServeFamily(testFamily, nil))
	defer gc.Close()
	family, group, err := resolveGroup(gc)
	if err != nil {
		t.Fatalf("resolveGroup: %v", err)
	}
	if family != testFamily.ID || group != 9 {
		t.Errorf("family %d group %d, want %d and 9 (the ID of \"tlshd\", not its index)", family, group, testFamily.ID)
	}
}

func TestListenErrors(t *testing.T) {
	noTlshd := testFamily
	noTlshd.Groups = noTlshd.Groups[:1]
	tests := []struct {
		name string
		fn   genltest.Func
		is   error
	}{
		{"missing family", func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
			return nil, genltest.Error(int(unix.ENOENT))
		}, os.ErrNotExist},
		{"no tlshd group", genltest.ServeFamily(noTlshd, nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gc := genltest.Dial(tt.fn)
			defer gc.Close()
			_, _, err := resolveGroup(gc)
			if err == nil || tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("resolveGroup() = %v, want an error matching %v", err, tt.is)
			}
		})
	}
}

// datagram encodes genetlink messages as the kernel sends them in one
// multicast datagram: a netlink header each, of type family.
func datagram(t *testing.T, family uint16, msgs ...genetlink.Message) []byte {
	t.Helper()
	var out []byte
	for _, m := range msgs {
		gb, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		nm := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(family)}, Data: gb}
		nm.Header.Length = uint32(16 + len(gb))
		b, err := nm.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// scripted returns a Listener whose receives return datagrams, then
// errors, then time out (EAGAIN) forever.
func scripted(datagrams [][]byte, errs []error, reads *int) *Listener {
	l := newListener(-1, testFamily.ID)
	l.recv = func(_ int, b []byte, timeout time.Duration) (int, error) {
		*reads++
		i := *reads - 1
		if i < len(datagrams) {
			return copy(b, datagrams[i]), nil
		}
		if i -= len(datagrams); i < len(errs) {
			return 0, errs[i]
		}
		time.Sleep(timeout)
		return 0, unix.EAGAIN
	}
	return l
}

func TestWaitDispatch(t *testing.T) {
	other := testFamily.ID + 1
	tests := []struct {
		name      string
		datagrams func(t *testing.T) [][]byte
		errs      []error
		want      error
		reads     int
	}{
		{"READY", func(t *testing.T) [][]byte { return [][]byte{datagram(t, testFamily.ID, readyMsg(t, 1))} }, nil, nil, 1},
		{"other commands, classes and families are ignored", func(t *testing.T) [][]byte {
			return [][]byte{
				datagram(t, testFamily.ID, genetlink.Message{Header: genetlink.Header{Command: cmdAccept}}),
				datagram(t, testFamily.ID, readyMsg(t, 2)),
				datagram(t, other, readyMsg(t, 1)),
				datagram(t, testFamily.ID, genetlink.Message{Header: genetlink.Header{Command: 7}}, readyMsg(t, 1)),
			}
		}, nil, nil, 4},
		{"READY without class", func(t *testing.T) [][]byte {
			return [][]byte{datagram(t, testFamily.ID, genetlink.Message{Header: genetlink.Header{Command: cmdReady}})}
		}, nil, nil, 1},
		{"garbage is ignored", func(t *testing.T) [][]byte {
			return [][]byte{{1, 2, 3}, datagram(t, testFamily.ID, readyMsg(t, 1))}
		}, nil, nil, 2},
		{"timeouts and EINTR retry", func(*testing.T) [][]byte { return nil },
			[]error{unix.EAGAIN, unix.EINTR, unix.ENOBUFS}, ErrOverrun, 3},
		{"ENOBUFS is an overrun", func(*testing.T) [][]byte { return nil }, []error{unix.ENOBUFS}, ErrOverrun, 1},
		{"other errors are wrapped", func(*testing.T) [][]byte { return nil }, []error{unix.EBADF}, unix.EBADF, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := 0
			l := scripted(tt.datagrams(t), tt.errs, &reads)
			err := l.Wait(context.Background())
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Wait() = %v, want %v", err, tt.want)
			}
			if reads != tt.reads {
				t.Errorf("%d receives, want %d", reads, tt.reads)
			}
		})
	}
}

func TestWaitCancel(t *testing.T) {
	reads := 0
	l := scripted(nil, nil, &reads)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Wait(ctx) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait() = %v, want context.Canceled", err)
		}
	case <-time.After(2 * waitSlice):
		t.Fatal("Wait did not return after cancel")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait() = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > waitSlice {
		t.Errorf("a 30ms deadline took %v", d)
	}
}

func TestWaitCancelledBeforehand(t *testing.T) {
	reads := 0
	l := scripted(nil, nil, &reads)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.Canceled) || reads != 0 {
		t.Fatalf("Wait() = %v after %d reads, want context.Canceled and none", err, reads)
	}
}

// TestRecvTimeout runs the real receive on a datagram socket pair.
// dgramPair is a connected pair of datagram sockets, closed at cleanup.
func dgramPair(t *testing.T) [2]int {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds
}

func TestRecvTimeout(t *testing.T) {
	fds := dgramPair(t)
	// The runtime's preemption signal may interrupt a wait (EINTR), as
	// Wait's loop expects: then wait again.
	recv := func(timeout time.Duration) (int, error) {
		for {
			n, err := recvTimeout(fds[0], make([]byte, 64), timeout)
			if !errors.Is(err, unix.EINTR) {
				return n, err
			}
		}
	}
	start := time.Now()
	if _, err := recv(20 * time.Millisecond); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("empty socket: %v, want EAGAIN", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond || d > time.Second {
		t.Errorf("timed out after %v, want about 20ms", d)
	}
	unix.Write(fds[1], []byte("hello"))
	if n, err := recv(time.Second); n != 5 || err != nil {
		t.Fatalf("recv = %d, %v", n, err)
	}
}

// TestRecvTimeoutYieldsToGC: recvTimeout keeps its P while it waits, yet a
// stop-the-world collection must not wait for the receive to time out.
func TestRecvTimeoutYieldsToGC(t *testing.T) {
	fds := dgramPair(t)
	const long = 5 * time.Second
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for {
			_, err := recvTimeout(fds[0], make([]byte, 64), long)
			if !errors.Is(err, unix.EINTR) {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // let it block
	for range 3 {
		runtime.GC()
	}
	select {
	case err := <-done:
		t.Fatalf("the receive ended (%v) before the collections could: they waited for it", err)
	default:
	}
	unix.Write(fds[1], []byte("x"))
	if err := <-done; err != nil {
		t.Fatalf("recv: %v", err)
	}
}
