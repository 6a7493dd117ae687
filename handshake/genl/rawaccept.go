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
}

func openRawAccept(family uint16) (*rawAccept, error) {
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
	// The reply carries a handful of attributes; 8 KiB is far beyond it.
	return &rawAccept{fd: fd, family: family, buf: make([]byte, 8192)}, nil
}

func (r *rawAccept) close() error { return unix.Close(r.fd) }

// accept performs one ACCEPT exchange; see Conn.Accept.
func (r *rawAccept) accept() (Request, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	msg, err := encodeAcceptMessage(r.family, r.seq)
	if err != nil {
		return Request{FD: -1}, err
	}
	if _, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(r.fd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)), 0, 0, 0); e != 0 {
		return Request{FD: -1}, fmt.Errorf("genl: ACCEPT: sending: %w", e)
	}
	got := false // a datagram came, though not our answer
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if got {
				// Only datagrams for other exchanges: no answer is coming.
				return Request{FD: -1}, errors.New("genl: ACCEPT: no reply from the kernel")
			}
			// Not answered within sendmsg after all: wait as usual,
			// bounded by the socket's receive timeout.
			m, err := unix.Read(r.fd, r.buf)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return Request{FD: -1}, fmt.Errorf("genl: ACCEPT: receiving: %w", err)
			}
			if m <= 0 {
				return Request{FD: -1}, errors.New("genl: ACCEPT: socket closed")
			}
			n = uintptr(m)
		default:
			return Request{FD: -1}, fmt.Errorf("genl: ACCEPT: receiving: %w", e)
		}
		got = true
		req, done, err := parseAcceptReply(r.buf[:n], r.family, r.seq)
		if done {
			return req, err
		}
		// A datagram for an earlier exchange (none is expected): read on.
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
// did not decode, which the caller still owns.
func parseAcceptReply(b []byte, family uint16, seq uint32) (req Request, done bool, err error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err == nil && len(msgs) == 0 {
		err = fmt.Errorf("%d bytes hold no message", len(b))
	}
	if err != nil {
		return Request{FD: -1}, true, fmt.Errorf("genl: ACCEPT: reply: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Seq != seq {
			continue
		}
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				return Request{FD: -1}, true, errors.New("genl: ACCEPT: short error message")
			}
			errno := -int32(binary.NativeEndian.Uint32(m.Data[:4]))
			switch {
			case errno == 0:
				continue // an ACK, though none was asked for
			case errno == int32(unix.EAGAIN):
				return Request{FD: -1}, true, fmt.Errorf("%w (%w)", ErrNoRequest, unix.EAGAIN)
			case errno < 0 || errno > maxErrno:
				return Request{FD: -1}, true, fmt.Errorf("genl: ACCEPT: error message with errno %d", errno)
			}
			return Request{FD: -1}, true, fmt.Errorf("genl: ACCEPT: %w", unix.Errno(errno))
		case family:
			if len(m.Data) < unix.GENL_HDRLEN || m.Data[0] != cmdAccept {
				continue
			}
			r, err := decodeAccept(m.Data[unix.GENL_HDRLEN:])
			return r, true, err
		}
	}
	return Request{FD: -1}, false, nil
}
