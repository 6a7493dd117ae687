package handshake

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// fileConn gives the handshake a net.Conn over the kernel's socket. It
// wraps a duplicate of fd (which net.FileConn dups once more, for the
// runtime poller) and closes the first duplicate, so that closing the
// net.Conn leaves fd, which DONE names, open. dupFD, if not nil, replaces
// the first dup (a test seam). Out of descriptors (EMFILE), it fails and
// the request's DONE goes out on fd, which the kernel gave us.
func fileConn(fd int, dupFD func(int) (int, error)) (net.Conn, error) {
	if dupFD == nil {
		dupFD = dupCloexec
	}
	dup, err := dupFD(fd)
	if err != nil {
		return nil, fmt.Errorf("duplicating the socket: %w", err)
	}
	f := os.NewFile(uintptr(dup), "handshake-socket")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrapping the socket: %w", err)
	}
	return c, nil
}

func dupCloexec(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

// peerAddr is the socket's peer address, or the zero value.
func peerAddr(fd int) netip.AddrPort {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
