package genl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A Listener receives READY notifications on its own socket, joined to
// the family's "tlshd" multicast group. The kernel refuses to queue
// handshake requests (ESRCH) while nobody listens, so a daemon listens
// before anything else.
//
// Wait blocks in recvfrom on the calling OS thread, not through Go's
// network poller, and keeps its P (see recvTimeout): the kernel then wakes
// exactly the thread that waits, which goes on to send ACCEPT at once. Requests pile up in the kernel
// (and it refuses more with EAGAIN once a few are pending) for as long as
// a READY takes to turn into an ACCEPT. Call Wait from a goroutine locked
// to its thread; it blocks that thread.
type Listener struct {
	fd     int
	family uint16
	buf    []byte
	mu     sync.Mutex // one Wait at a time
	// recv reads one datagram; tests replace it.
	recv func(fd int, b []byte, timeout time.Duration) (int, error)
}

// Listen opens a generic netlink socket, resolves the family and joins
// its "tlshd" group.
func Listen() (*Listener, error) {
	gc, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("genl: opening generic netlink socket: %w", err)
	}
	defer gc.Close()
	family, group, err := resolveGroup(gc)
	if err != nil {
		return nil, err
	}
	fd, err := plainSocket("READY")
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(group)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("genl: joining multicast group %q (%d): %w", groupName, group, err)
	}
	return newListener(fd, family), nil
}

func newListener(fd int, family uint16) *Listener {
	return &Listener{fd: fd, family: family, buf: make([]byte, os.Getpagesize()), recv: recvTimeout}
}

// plainSocket opens and binds a blocking generic netlink socket, for
// system calls made directly rather than through netlink.Conn.
func plainSocket(what string) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return -1, fmt.Errorf("genl: opening the %s socket: %w", what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("genl: binding the %s socket: %w", what, err)
	}
	return fd, nil
}

// resolveGroup finds the family's ID and the ID of its "tlshd" group.
func resolveGroup(gc *genetlink.Conn) (family uint16, group uint32, err error) {
	f, err := getFamily(gc)
	if err != nil {
		return 0, 0, err
	}
	id, err := tlshdGroup(f)
	if err != nil {
		return 0, 0, err
	}
	return f.ID, id, nil
}

// tlshdGroup returns the ID of the "tlshd" group; IDs are dynamic and
// differ from the group's index within the family.
func tlshdGroup(f genetlink.Family) (uint32, error) {
	for _, g := range f.Groups {
		if g.Name == groupName {
			return g.ID, nil
		}
	}
	return 0, fmt.Errorf("genl: family %q has no multicast group %q", f.Name, groupName)
}

// recvTimeout is a blocking receive bounded by SO_RCVTIMEO, in raw system
// calls: the goroutine keeps its P while it waits, so when READY arrives
// it sends ACCEPT at once instead of first waiting, under load, a
// scheduler time slice for a P that handshakes hold (a reset storm traced
// 10-60 ms; the daemon gives Go one P more than CPUs for this). It still
// yields to the runtime: a preemption signal interrupts a receive that
// has SO_RCVTIMEO (EINTR, signal(7)), the runtime repeats the signal
// while it waits, and the caller's loop then reaches a preemption point.
func recvTimeout(fd int, b []byte, timeout time.Duration) (int, error) {
	tv := unix.NsecToTimeval(max(timeout, time.Millisecond).Nanoseconds())
	if _, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO,
		uintptr(unsafe.Pointer(&tv)), unsafe.Sizeof(tv), 0); e != 0 {
		return 0, e
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(p), uintptr(len(b)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// waitSlice bounds each blocking receive, so that a cancelled context is
// noticed this soon.
const waitSlice = 250 * time.Millisecond

// Wait blocks until a READY notification arrives and returns nil. It
// returns an error wrapping ErrOverrun if notifications were lost (the
// caller then sweeps as after a READY), ctx.Err() once ctx is done, and
// any other receive error wrapped. Messages other than READY are ignored.
//
// One READY may stand for several requests and requests may have been
// queued before the daemon started, so a caller always sweeps with
// Conn.Accept until ErrNoRequest after Wait returns nil.
func (l *Listener) Wait(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		slice := waitSlice
		if d, ok := ctx.Deadline(); ok {
			if slice = min(slice, time.Until(d)); slice <= 0 {
				return context.DeadlineExceeded
			}
		}
		n, err := l.recv(l.fd, l.buf, slice)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue // timed out: look at ctx again
		case errors.Is(err, unix.ENOBUFS):
			return fmt.Errorf("%w (%w)", ErrOverrun, err)
		case err != nil:
			return fmt.Errorf("genl: receiving READY: %w", err)
		}
		if l.hasReady(l.buf[:n]) {
			return nil
		}
	}
}

// hasReady reports whether a datagram holds a READY of our family.
func (l *Listener) hasReady(b []byte) bool {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Type != l.family {
			continue
		}
		var gm genetlink.Message
		if gm.UnmarshalBinary(m.Data) == nil && isReady(gm) {
			return true
		}
	}
	return false
}

// isReady reports whether m is a READY for the tlshd handler class. The
// class is checked only if present: a spurious sweep costs one ACCEPT,
// a missed READY leaves a request to time out.
func isReady(m genetlink.Message) bool {
	if m.Header.Command != cmdReady {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return true
	}
	for ad.Next() {
		if ad.Type() == acceptHandlerClass {
			if c := ad.Uint32(); ad.Err() == nil && c != handlerClassTLSHD {
				return false
			}
		}
	}
	return true
}

// Close closes the socket. Stop Waits first (cancel their context):
// closing a socket another thread blocks on does not wake it.
func (l *Listener) Close() error { return unix.Close(l.fd) }
