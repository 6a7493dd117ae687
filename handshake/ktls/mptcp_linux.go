package ktls

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MPTCP socket options (include/uapi/linux/mptcp.h).
const (
	solMPTCP  = 284 // SOL_MPTCP
	mptcpInfo = 1   // MPTCP_INFO

	// mptcpInfoFlagFallback is MPTCP_INFO_FLAG_FALLBACK in mptcpi_flags.
	mptcpInfoFlagFallback = 1 << 0

	// mptcpInfoLen is the size of struct mptcp_info as of Linux 6.18;
	// older kernels copy less, newer ones no more than asked.
	mptcpInfoLen = 96
	// mptcpInfoMinLen covers the fields through mptcpi_rcv_nxt, which
	// every kernel with SOL_MPTCP (5.16) returns.
	mptcpInfoMinLen = 40
	// mptcpInfoTotalOff is mptcpi_subflows_total's offset (Linux 6.10).
	mptcpInfoTotalOff = 80
)

var (
	// ErrNotMPTCP means the socket's protocol (SO_PROTOCOL) is not
	// MPTCP (262).
	ErrNotMPTCP = errors.New("ktls: not an MPTCP socket")

	// ErrMPTCPFallback means an MPTCP socket has fallen back to plain
	// TCP (the peer or a middlebox dropped MP_CAPABLE): the kernel
	// answers SOL_MPTCP options from the one TCP subflow, which knows
	// none. The MPTCP kTLS proposal supports only non-fallback sockets.
	ErrMPTCPFallback = errors.New("ktls: MPTCP socket fell back to plain TCP")
)

// MPTCPInfo is what MPTCP_INFO says about an MPTCP connection.
type MPTCPInfo struct {
	// Subflows counts the subflows added after the first one
	// (mptcpi_subflows: the path manager's count).
	Subflows uint8
	// SubflowsTotal counts every subflow, the first included
	// (mptcpi_subflows_total, Linux 6.10+); on older kernels it is
	// Subflows+1, as the kernel itself computes it.
	SubflowsTotal uint8
	// SubflowsMax is the limit on added subflows (ip mptcp limits).
	SubflowsMax uint8
	// AddAddrSignal counts the addresses this side announced,
	// AddAddrAccepted those it accepted from the peer.
	AddAddrSignal, AddAddrAccepted uint8
	// Flags is mptcpi_flags; Fallback is its fallback bit.
	Flags    uint32
	Fallback bool
	// Token identifies the connection (ss -M, the path manager).
	Token uint32
}

// ParseMPTCPInfo decodes the struct mptcp_info a kernel returned (any
// length from Linux 5.16's on).
func ParseMPTCPInfo(b []byte) (MPTCPInfo, error) {
	if len(b) < mptcpInfoMinLen {
		return MPTCPInfo{}, fmt.Errorf("ktls: MPTCP_INFO of %d bytes, want at least %d", len(b), mptcpInfoMinLen)
	}
	ne := binary.NativeEndian
	i := MPTCPInfo{
		Subflows:        b[0],
		AddAddrSignal:   b[1],
		AddAddrAccepted: b[2],
		SubflowsMax:     b[3],
		Flags:           ne.Uint32(b[8:]),
		Token:           ne.Uint32(b[12:]),
	}
	i.Fallback = i.Flags&mptcpInfoFlagFallback != 0
	if len(b) > mptcpInfoTotalOff {
		i.SubflowsTotal = b[mptcpInfoTotalOff]
	} else {
		i.SubflowsTotal = i.Subflows + 1
	}
	return i, nil
}

// ReadMPTCPInfo reads MPTCP_INFO from an MPTCP socket. It fails with
// ErrNotMPTCP on any other socket and with ErrMPTCPFallback once the
// connection has fallen back to TCP.
func ReadMPTCPInfo(fd int) (MPTCPInfo, error) {
	p, err := Protocol(fd)
	if err != nil {
		return MPTCPInfo{}, err
	}
	if p != unix.IPPROTO_MPTCP {
		return MPTCPInfo{}, fmt.Errorf("%w (protocol %d)", ErrNotMPTCP, p)
	}
	var b [mptcpInfoLen]byte
	n := uint32(len(b))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), solMPTCP, mptcpInfo,
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
	switch {
	case e == unix.EOPNOTSUPP || e == unix.ENOPROTOOPT:
		// The fallen-back connection's TCP subflow answers: it has no
		// SOL_MPTCP (EOPNOTSUPP over IPv4, ENOPROTOOPT over IPv6).
		return MPTCPInfo{}, fmt.Errorf("%w (getsockopt MPTCP_INFO: %v)", ErrMPTCPFallback, e)
	case e != 0:
		return MPTCPInfo{}, fmt.Errorf("ktls: getsockopt MPTCP_INFO: %w", e)
	}
	info, err := ParseMPTCPInfo(b[:min(n, uint32(len(b)))])
	if err != nil {
		return MPTCPInfo{}, err
	}
	if info.Fallback {
		return info, fmt.Errorf("%w (MPTCP_INFO_FLAG_FALLBACK)", ErrMPTCPFallback)
	}
	return info, nil
}

// MPTCPFallback reports whether the MPTCP socket fd has fallen back to
// plain TCP. It fails on a socket that is not MPTCP.
func MPTCPFallback(fd int) (bool, error) {
	_, err := ReadMPTCPInfo(fd)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrMPTCPFallback):
		return true, nil
	}
	return false, err
}

// AttachULP attaches the "tls" ULP to the connected socket fd without
// installing keys: until TLS_TX and TLS_RX are set the socket passes data
// through unchanged, so it can be done before a handshake, to learn
// whether this socket will take kTLS before spending a handshake on it.
// This is how to ask about an MPTCP socket: under the MPTCP kTLS proposal
// the msk takes the ULP like a TCP socket, and today's kernels refuse it
// with ENOPROTOOPT.
//
// A ULP already attached is fine if it is "tls" (the kernel answers
// EEXIST to a second TCP_ULP), so Install may follow. Errors are
// *InstallError at StepULP, unwrapping to ErrULPUnsupported when the
// socket refuses the ULP and to ErrNoKTLS when the kernel has none.
func AttachULP(fd int) error {
	err := unix.SetsockoptString(fd, unix.SOL_TCP, unix.TCP_ULP, "tls")
	if err == nil || ulpIsTLS(fd, err) {
		return nil
	}
	return ulpError(err)
}

// ULPSupported reports whether the connected socket fd takes the TLS
// ULP, attaching it (see AttachULP): true if it did, false with a nil
// error if this socket refuses it (ErrULPUnsupported: an MPTCP socket on
// a kernel without MPTCP kTLS), false with the error otherwise (no tls
// module: ErrNoKTLS).
func ULPSupported(fd int) (bool, error) {
	err := AttachULP(fd)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrULPUnsupported):
		return false, nil
	}
	return false, err
}

// ulpIsTLS reports whether err, from setting TCP_ULP "tls", says the
// socket already has that ULP: EEXIST, and TCP_ULP reads back "tls".
func ulpIsTLS(fd int, err error) bool {
	if !errors.Is(err, unix.EEXIST) {
		return false
	}
	ulp, gerr := ULP(fd)
	return gerr == nil && ulp == "tls"
}

// ULP returns the name of the socket's upper layer protocol (TCP_ULP),
// "" if none. An MPTCP socket reports "mptcp" on today's kernels.
func ULP(fd int) (string, error) {
	// TCP_ULP_NAME_MAX is 16.
	s, err := unix.GetsockoptString(fd, unix.SOL_TCP, unix.TCP_ULP)
	if err != nil {
		return "", fmt.Errorf("ktls: getsockopt TCP_ULP: %w", err)
	}
	return s, nil
}
