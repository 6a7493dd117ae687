package handshake

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
)

// MPTCPInstaller is an Installer that can tell, before a handshake,
// whether an MPTCP socket will take kTLS. KTLS implements it with the
// kernel; tests implement it with a model of a kernel. A Daemon whose
// Installer does not implement it asks the kernel (the socket is real
// either way).
type MPTCPInstaller interface {
	Installer
	// MPTCPFallback reports whether the MPTCP socket has fallen back
	// to plain TCP.
	MPTCPFallback(fd int) (bool, error)
	// AttachULP attaches the "tls" ULP without keys (the socket passes
	// data through until Install sets them); Install must then tolerate
	// the ULP being there. Errors unwrap as ktls.AttachULP's do.
	AttachULP(fd int) error
}

// MPTCPFallback implements MPTCPInstaller with MPTCP_INFO.
func (KTLS) MPTCPFallback(fd int) (bool, error) { return ktls.MPTCPFallback(fd) }

// AttachULP implements MPTCPInstaller with setsockopt(TCP_ULP, "tls").
func (KTLS) AttachULP(fd int) error { return ktls.AttachULP(fd) }

// kernelMPTCP asks the kernel, for Installers that cannot.
type kernelMPTCP struct{ Installer }

func (kernelMPTCP) MPTCPFallback(fd int) (bool, error) { return ktls.MPTCPFallback(fd) }
func (kernelMPTCP) AttachULP(fd int) error             { return ktls.AttachULP(fd) }

// checkMPTCP decides, before any handshake byte, whether an MPTCP socket
// can end up with kTLS; other sockets pass. It follows the MPTCP kTLS
// proposal (RFC series of 2026-06): kTLS goes on the MPTCP-level socket
// exactly as on TCP (TCP_ULP "tls", then TLS_TX and TLS_RX), and only on
// a socket that has not fallen back to plain TCP. So a fallen-back socket
// is refused, and otherwise the TLS ULP is attached now: a kernel without
// the series refuses it (ENOPROTOOPT), and the request ends with
// EOPNOTSUPP in milliseconds instead of after a handshake whose keys
// would have nowhere to go. On a kernel with the series the ULP stays,
// passing the handshake's bytes through, and Install adds the keys.
func (d *Daemon) checkMPTCP(fd, proto int) error {
	if proto != unix.IPPROTO_MPTCP {
		return nil
	}
	m, ok := d.Installer.(MPTCPInstaller)
	if !ok {
		m = kernelMPTCP{d.Installer}
	}
	fallback, err := m.MPTCPFallback(fd)
	if err != nil {
		return fmt.Errorf("reading MPTCP_INFO: %w", err)
	}
	if fallback {
		return fmt.Errorf("%w: the MPTCP socket fell back to plain TCP, and kTLS on MPTCP needs a socket that did not", errUnsupported)
	}
	if err := m.AttachULP(fd); err != nil {
		if errors.Is(err, ktls.ErrULPUnsupported) {
			return fmt.Errorf("%w: the kernel lacks kTLS on MPTCP sockets (the MPTCP kTLS series): TCP_ULP \"tls\" refused before the handshake: %w", errUnsupported, err)
		}
		return err
	}
	return nil
}
