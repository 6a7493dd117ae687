package handshake

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sockConn is the handshake's net.Conn: the kernel's socket itself, with
// no duplicate descriptor, so that a request costs this process one fd
// (the one ACCEPT installed) and a daemon at its RLIMIT_NOFILE can still
// finish what it accepted. The fd is made non-blocking and handed to the
// runtime poller through os.NewFile, which gives deadlines. Close only
// interrupts I/O: DONE must name the fd, so finish closes it
// (closeSocket), after DONE.
type sockConn struct {
	*os.File
	local, remote net.Addr
}

func (c *sockConn) LocalAddr() net.Addr  { return c.local }
func (c *sockConn) RemoteAddr() net.Addr { return c.remote }

// Close interrupts any Read or Write and leaves the fd open.
func (c *sockConn) Close() error { return c.File.SetDeadline(time.Unix(1, 0)) }

// openSocket puts the kernel's socket under the runtime poller; r.file
// then owns fd (closeSocket closes it).
func (r *request) openSocket() (net.Conn, error) {
	fd := int(r.FD)
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("making the socket non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "handshake-socket")
	if f == nil {
		return nil, fmt.Errorf("socket fd %d is invalid", fd)
	}
	r.file = f
	if err := f.SetDeadline(time.Time{}); err != nil {
		// Not pollable: deadlines would not work.
		return nil, fmt.Errorf("polling the socket: %w", err)
	}
	c := &sockConn{File: f, remote: net.TCPAddrFromAddrPort(r.peer)}
	if sa, err := unix.Getsockname(fd); err == nil {
		c.local = sockaddrTCP(sa)
	}
	return c, nil
}

// closeSocket closes the request's fd, after DONE: through r.file when
// the poller has it, which also takes it off the poller.
func (r *request) closeSocket() {
	if r.file != nil {
		r.file.Close()
		r.file = nil
		return
	}
	unix.Close(int(r.FD))
}

func sockaddrTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	}
	return &net.TCPAddr{}
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
