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

// Conn.Accept's errors fall into four classes, told apart with errors.Is:
//
//   - ErrNoRequest: nothing is pending; the sweep is over.
//   - ErrRetry: the exchange failed for a passing reason (EINTR, EAGAIN
//     without the kernel's answer, ENOBUFS, ENOMEM); a pending request
//     may still be waiting, so the caller tries again after a backoff.
//   - ErrBadReply: the kernel dequeued a request but its reply was
//     unusable: truncated (ErrTruncated), without SOCKFD (ErrNoSockFD) or
//     undecodable. The request is lost to the daemon; if Request.FD >= 0
//     the caller still owns that socket and sends DONE for it (EIO) and
//     closes it. Other requests are unaffected: the sweep goes on.
//   - anything else is fatal for the Conn (EPERM: not CAP_NET_ADMIN in
//     the initial user namespace; EBADF: socket closed; ...).
//
// Conn.Stats counts each class.
var (
	// ErrRetry marks an ACCEPT that failed for a passing reason.
	ErrRetry = errors.New("genl: ACCEPT failed temporarily")

	// ErrBadReply marks an ACCEPT reply that could not be used.
	ErrBadReply = errors.New("genl: unusable ACCEPT reply")

	// ErrTruncated means the ACCEPT reply did not fit the receive buffer
	// (MSG_TRUNC). It also matches ErrBadReply.
	ErrTruncated error = badReply("genl: ACCEPT reply truncated (MSG_TRUNC)")

	// ErrNoSockFD means the ACCEPT reply carried no usable SOCKFD. It
	// also matches ErrBadReply.
	ErrNoSockFD error = badReply("genl: ACCEPT reply has no SOCKFD")
)

// badReply is an error that also matches ErrBadReply.
type badReply string

func (e badReply) Error() string        { return string(e) }
func (e badReply) Is(target error) bool { return target == ErrBadReply }

type noFamilyError struct{}

func (noFamilyError) Error() string {
	return `genl: no "handshake" generic netlink family: the kernel lacks net/handshake (CONFIG_NET_HANDSHAKE, Linux ≥ 6.5)`
}

func (noFamilyError) Is(target error) bool { return target == os.ErrNotExist }
