package genl

import (
	"context"
	"errors"
	"os"
	"sync"
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

// noDeadline lets a genltest connection stand in for a socket: genltest
// supports no deadlines.
type noDeadline struct{ *genetlink.Conn }

func (noDeadline) SetReadDeadline(time.Time) error { return nil }

func TestListenJoinsTlshdGroup(t *testing.T) {
	gc := genltest.Dial(genltest.ServeFamily(testFamily, nil))
	defer gc.Close()
	var joined []uint32
	_, err := listen(gc, func(_ *genetlink.Conn, id uint32) error {
		joined = append(joined, id)
		return nil
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if len(joined) != 1 || joined[0] != 9 {
		t.Errorf("joined groups %v, want [9] (the ID of \"tlshd\", not its index)", joined)
	}
}

func TestListenErrors(t *testing.T) {
	noTlshd := testFamily
	noTlshd.Groups = noTlshd.Groups[:1]
	tests := []struct {
		name string
		fn   genltest.Func
		join error
		is   error
	}{
		{
			name: "missing family",
			fn: func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
				return nil, genltest.Error(int(unix.ENOENT))
			},
			is: ErrNoFamily,
		},
		{name: "no tlshd group", fn: genltest.ServeFamily(noTlshd, nil)},
		{name: "join fails", fn: genltest.ServeFamily(testFamily, nil), join: unix.EPERM, is: unix.EPERM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gc := genltest.Dial(tt.fn)
			defer gc.Close()
			_, err := listen(gc, func(*genetlink.Conn, uint32) error { return tt.join })
			if err == nil {
				t.Fatal("listen succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("listen() = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestWaitDispatch(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]genetlink.Message // one per Receive
		errs    []error               // Receive error after the batches
		want    error
		reads   int
	}{
		{
			name:    "READY",
			batches: [][]genetlink.Message{{readyMsg(t, 1)}},
			reads:   1,
		},
		{
			name: "other commands and classes are ignored",
			batches: [][]genetlink.Message{
				{{Header: genetlink.Header{Command: cmdAccept}}},
				{readyMsg(t, 2)},
				{{Header: genetlink.Header{Command: 7}}, readyMsg(t, 1)},
			},
			reads: 3,
		},
		{
			name:    "READY without class",
			batches: [][]genetlink.Message{{{Header: genetlink.Header{Command: cmdReady}}}},
			reads:   1,
		},
		{
			name:  "ENOBUFS is an overrun",
			errs:  []error{os.NewSyscallError("recvmsg", unix.ENOBUFS)},
			want:  ErrOverrun,
			reads: 1,
		},
		{
			name:  "other errors are wrapped",
			errs:  []error{os.NewSyscallError("recvmsg", unix.EBADF)},
			want:  unix.EBADF,
			reads: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := 0
			gc := genltest.Dial(func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
				if len(nreq.Data) != 0 {
					t.Errorf("listener sent a request: %+v", nreq)
				}
				reads++
				if i := reads - 1; i < len(tt.batches) {
					return tt.batches[i], nil
				}
				if i := reads - 1 - len(tt.batches); i < len(tt.errs) {
					return nil, tt.errs[i]
				}
				t.Fatal("too many receives")
				return nil, nil
			})
			defer gc.Close()
			l := &Listener{c: noDeadline{gc}}
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

// blockingReceiver blocks in Receive until a read deadline in the past
// is set, like a socket.
type blockingReceiver struct {
	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{}
}

func newBlockingReceiver() *blockingReceiver {
	return &blockingReceiver{wake: make(chan struct{}, 1)}
}

func (r *blockingReceiver) Receive() ([]genetlink.Message, []netlink.Message, error) {
	for {
		r.mu.Lock()
		d := r.deadline
		r.mu.Unlock()
		if !d.IsZero() && d.Before(time.Now()) {
			return nil, nil, os.ErrDeadlineExceeded
		}
		<-r.wake
	}
}

func (r *blockingReceiver) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	r.deadline = t
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

func (r *blockingReceiver) Close() error { return nil }

func TestWaitCancel(t *testing.T) {
	r := newBlockingReceiver()
	l := &Listener{c: r}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Wait(ctx) }()
	time.Sleep(10 * time.Millisecond) // let Wait block
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait() = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after cancel")
	}

	// The next Wait clears the deadline and blocks again.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Wait() = %v, want context.DeadlineExceeded", err)
	}
}

func TestWaitCancelledBeforehand(t *testing.T) {
	l := &Listener{c: newBlockingReceiver()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait() = %v, want context.Canceled", err)
	}
}
