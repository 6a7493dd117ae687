package genl

import (
	"errors"
	"os"
)

var (
	// ErrNoFamily means the kernel has no "handshake" generic netlink
	// family. It matches os.ErrNotExist.
	ErrNoFamily error = noFamilyError{}

	// ErrNoRequest means ACCEPT found nothing pending (the kernel
	// answered EAGAIN; errors wrapping it also match unix.EAGAIN). It
	// ends a sweep.
	ErrNoRequest = errors.New("genl: no pending handshake request")

	// ErrOverrun means the listener's receive buffer overflowed
	// (ENOBUFS) and READY notifications were lost. The caller sweeps
	// with ACCEPT until ErrNoRequest, as it does after a READY.
	ErrOverrun = errors.New("genl: READY notifications lost (receive buffer overrun)")
)

type noFamilyError struct{}

func (noFamilyError) Error() string {
	return `genl: no "handshake" generic netlink family: the kernel lacks net/handshake (CONFIG_NET_HANDSHAKE, Linux ≥ 6.5)`
}

func (noFamilyError) Is(target error) bool { return target == os.ErrNotExist }
