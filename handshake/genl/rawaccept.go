package genl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawAccept sends ACCEPT on a plain blocking netlink socket of its own, in
// raw system calls.
//
// Why: during a burst the kernel keeps only a few requests pending (4 at
// 2 GiB) and refuses further submits with EAGAIN, so the accept thread
// must sweep them out back to back. Through genetlink.Conn each exchange
// is an ordinary system call plus the netpoller; under load Go's runtime
// takes the thread's P during the call and the thread then waits a
// scheduler time slice (10 ms) for one, per request: a reset storm traced
// 5-20 ms between consecutive ACCEPTs of one sweep. The kernel answers
// ACCEPT within sendmsg, so both calls are short and may keep the P.
type rawAccept struct {
	mu     sync.Mutex
	fd     int
	family uint16
	seq    uint32
	buf    []byte
	oob    []byte
	stats  *counters

	// keyUpdate: decode the KeyUpdate proposal's ACCEPT attributes
	// (Capabilities.SessionID).
	keyUpdate bool

	// send and recv are the system calls; tests replace them to inject
	// EINTR and the like that real sockets cannot be made to return on
	// cue.
	send func(fd int, b []byte) syscall.Errno
	recv func(fd int, b, oob []byte, flags int) (n, oobn, mflags int, e syscall.Errno)
}

func openRawAccept(family uint16, stats *counters) (*rawAccept, error) {
	fd, err := plainSocket("ACCEPT")
	if err != nil {
		return nil, err
	}
	// The kernel answers within sendmsg; never wait long for it.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("genl: ACCEPT socket timeout: %w", err)
	}
	return newRawAccept(fd, family, stats), nil
}

func newRawAccept(fd int, family uint16, stats *counters) *rawAccept {
	// The reply carries a handful of attributes; 8 KiB is far beyond it.
	// The control buffer only catches file descriptors nobody should
	// send (see closeRights).
	return &rawAccept{
		fd: fd, family: family, stats: stats,
		buf: make([]byte, 8192), oob: make([]byte, unix.CmsgSpace(16*4)),
		send: rawSend, recv: rawRecvmsg,
	}
}

func (r *rawAccept) close() error { return unix.Close(r.fd) }

func rawSend(fd int, b []byte) syscall.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	return e
}

// rawRecvmsg is recvmsg(2). With MSG_DONTWAIT it is a raw system call
// (it cannot block, so it may keep the P); without, an ordinary one.
func rawRecvmsg(fd int, b, oob []byte, flags int) (n, oobn, mflags int, e syscall.Errno) {
	var iov unix.Iovec
	iov.Base = &b[0]
	iov.SetLen(len(b))
	var msg unix.Msghdr
	msg.Iov = &iov
	msg.Iovlen = 1
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	var r uintptr
	if flags&unix.MSG_DONTWAIT != 0 {
		r, _, e = unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	} else {
		r, _, e = unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	}
	if e != 0 {
		return 0, 0, 0, e
	}
	return int(r), int(msg.Controllen), int(msg.Flags), 0
}

// retryable reports whether an errno from the ACCEPT exchange is a
// passing condition: interrupted, no answer yet, or the kernel short of
// memory or (EMFILE, ENFILE) of file descriptors for the socket.
func retryable(e error) bool {
	for _, x := range []syscall.Errno{unix.EINTR, unix.EAGAIN, unix.ENOBUFS, unix.ENOMEM, unix.EMFILE, unix.ENFILE} {
		if errors.Is(e, x) {
			return true
		}
	}
	return false
}

// exchangeErr wraps an errno of the exchange itself (not the kernel's
// answer), marking it ErrRetry when it is a passing one.
func exchangeErr(what string, e error) error {
	if retryable(e) {
		return fmt.Errorf("%w: %s: %w", ErrRetry, what, e)
	}
	return fmt.Errorf("genl: ACCEPT: %s: %w", what, e)
}

// accept performs one ACCEPT exchange; see Conn.Accept.
func (r *rawAccept) accept() (Request, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	msg, err := encodeAcceptMessage(r.family, r.seq)
	if err != nil {
		return Request{FD: -1}, err
	}
	if e := r.send(r.fd, msg); e != 0 {
		return Request{FD: -1}, exchangeErr("sending", e)
	}
	got := false // a datagram came, though not our answer
	for {
		n, oobn, mflags, e := r.recv(r.fd, r.buf, r.oob, unix.MSG_DONTWAIT)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if got {
				// Only datagrams for other exchanges: no answer is coming.
				return Request{FD: -1}, exchangeErr("no reply from the kernel", e)
			}
			// Not answered within sendmsg after all: wait as usual,
			// bounded by the socket's receive timeout (EAGAIN again).
			n, oobn, mflags, e = r.recv(r.fd, r.buf, r.oob, 0)
			if e == unix.EINTR {
				continue
			}
			if e != 0 {
				return Request{FD: -1}, exchangeErr("receiving", e)
			}
		default:
			return Request{FD: -1}, exchangeErr("receiving", e)
		}
		r.closeRights(r.oob[:oobn])
		if n == 0 {
			return Request{FD: -1}, errors.New("genl: ACCEPT: socket closed")
		}
		got = true
		var (
			req  Request
			done bool
		)
		if mflags&unix.MSG_TRUNC != 0 {
			req, done, err = parseTruncatedReply(r.buf[:n], r.family, r.seq)
		} else {
			req, done, err = parseAcceptReply(r.buf[:n], r.family, r.seq, r.keyUpdate)
		}
		if done {
			return req, err
		}
		// A datagram for an earlier exchange (none is expected): read on.
	}
}

// closeRights closes any file descriptor that came with a datagram as
// SCM_RIGHTS. The kernel hands the ACCEPT socket over as an attribute, not
// this way, and netlink never carries SCM_RIGHTS; but an fd that did
// arrive would otherwise stay open in this process for good.
func (r *rawAccept) closeRights(oob []byte) {
	if len(oob) == 0 {
		return
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, c := range cmsgs {
		fds, err := unix.ParseUnixRights(&c)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.Close(fd)
			r.stats.strayFDs.Add(1)
		}
	}
}

// encodeAcceptMessage builds a whole ACCEPT request: netlink header,
// generic netlink header, attributes. No NLM_F_ACK: ACCEPT has a reply
// message, and an ACK queued after it would answer the next request.
func encodeAcceptMessage(family uint16, seq uint32) ([]byte, error) {
	attrs, err := encodeAcceptRequest()
	if err != nil {
		return nil, err
	}
	b := make([]byte, unix.NLMSG_HDRLEN+unix.GENL_HDRLEN+len(attrs))
	ne := binary.NativeEndian
	ne.PutUint32(b[0:4], uint32(len(b)))
	ne.PutUint16(b[4:6], family)
	ne.PutUint16(b[6:8], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:12], seq)
	// b[12:16], the port ID, stays 0: the kernel fills in ours.
	b[16], b[17] = cmdAccept, familyVersion
	copy(b[unix.NLMSG_HDRLEN+unix.GENL_HDRLEN:], attrs)
	return b, nil
}

// parseAcceptReply reads one datagram received after ACCEPT number seq.
// done is false if the datagram answers no message of seq (the caller
// reads on). Otherwise the result is Conn.Accept's: a request, or an error
// wrapping ErrNoRequest when nothing was pending, or another error; an
// error with req.FD >= 0 means the kernel installed a socket whose reply
// did not decode, which the caller still owns. keyUpdate is as for
// decodeAccept.
func parseAcceptReply(b []byte, family uint16, seq uint32, keyUpdate bool) (req Request, done bool, err error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err == nil && len(msgs) == 0 {
		err = fmt.Errorf("%d bytes hold no message", len(b))
	}
	if err != nil {
		// Whose it was is unknown; if it was ours, its fd is too.
		return Request{FD: -1}, true, fmt.Errorf("%w: %w", ErrBadReply, fmt.Errorf("genl: ACCEPT: reply: %w", err))
	}
	for _, m := range msgs {
		if m.Header.Seq != seq {
			continue
		}
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				return Request{FD: -1}, true, fmt.Errorf("%w: genl: ACCEPT: short error message", ErrBadReply)
			}
			errno := -int32(binary.NativeEndian.Uint32(m.Data[:4]))
			switch {
			case errno == 0:
				continue // an ACK, though none was asked for
			case errno == int32(unix.EAGAIN):
				return Request{FD: -1}, true, fmt.Errorf("%w (%w)", ErrNoRequest, unix.EAGAIN)
			case errno < 0 || errno > maxErrno:
				return Request{FD: -1}, true, fmt.Errorf("%w: genl: ACCEPT: error message with errno %d", ErrBadReply, errno)
			}
			return Request{FD: -1}, true, kernelErr(unix.Errno(errno))
		case family:
			if len(m.Data) < unix.GENL_HDRLEN || m.Data[0] != cmdAccept {
				continue
			}
			r, err := decodeAccept(m.Data[unix.GENL_HDRLEN:], keyUpdate)
			return r, true, err
		}
	}
	return Request{FD: -1}, false, nil
}

// kernelErr wraps an errno the kernel answered ACCEPT with. ENOMEM and
// EMFILE mean the kernel could not install the socket in this process
// (it completed that request with EIO); another may follow.
func kernelErr(e unix.Errno) error {
	if retryable(e) {
		return fmt.Errorf("%w: kernel: %w", ErrRetry, e)
	}
	return fmt.Errorf("genl: ACCEPT: %w", e)
}

// parseTruncatedReply reads a datagram that did not fit the buffer
// (MSG_TRUNC). If it is a reply to seq, the request it carried is lost:
// the error wraps ErrTruncated, and the Request carries the SOCKFD if the
// part that arrived holds one, so that the caller sends DONE for it and
// closes it. A truncated datagram for another exchange is skipped.
func parseTruncatedReply(b []byte, family uint16, seq uint32) (req Request, done bool, err error) {
	if len(b) >= unix.NLMSG_HDRLEN {
		ne := binary.NativeEndian
		typ, s := ne.Uint16(b[4:6]), ne.Uint32(b[8:12])
		if s != seq || typ != family && typ != unix.NLMSG_ERROR {
			return Request{FD: -1}, false, nil
		}
		if typ == family && len(b) >= unix.NLMSG_HDRLEN+unix.GENL_HDRLEN {
			req.FD = scanSockFD(b[unix.NLMSG_HDRLEN+unix.GENL_HDRLEN:])
		} else {
			req.FD = -1
		}
	} else {
		req.FD = -1
	}
	return req, true, fmt.Errorf("%w (%d bytes received)", ErrTruncated, len(b))
}
