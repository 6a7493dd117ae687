package ktls

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// This file answers "does this kernel's kTLS do X?" for `tlshd-go probe`.
// Each probe builds a connected loopback socket pair, tries the feature on
// it with throwaway keys and closes both: the answer is the kernel's own,
// not a guess from its version.

// ipprotoMPTCP is IPPROTO_MPTCP.
const ipprotoMPTCP = 262

// Suites are the TLS 1.3 cipher suites Install knows, in IANA order.
func Suites() []uint16 { return []uint16{0x1301, 0x1302, 0x1303} }

// throwawayKeys are keys of the right lengths for suite, all zero: the
// probes never send a record.
func throwawayKeys(suite uint16) (Keys, error) {
	info, ok := suiteFor(suite)
	if !ok {
		return Keys{}, fmt.Errorf("ktls: unknown suite %#04x", suite)
	}
	return Keys{Suite: suite, Key: make([]byte, info.keyLen), IV: make([]byte, writeIVLen)}, nil
}

// ProbeCipher reports whether kTLS takes TLS 1.3 keys of suite in both
// directions on a TCP socket: nil if so, else Install's error (ErrNoKTLS
// when the tls module is missing, ENOENT/EINVAL-style errnos otherwise).
func ProbeCipher(suite uint16) error {
	k, err := throwawayKeys(suite)
	if err != nil {
		return err
	}
	return withPair(unix.IPPROTO_TCP, func(fd int) error { return Install(fd, k, k, Options{}) })
}

// ProbeRekey reports whether kTLS takes a second TLS_TX on a TLS 1.3
// socket, which a KeyUpdate needs (Linux 6.14 and later; older kernels
// answer EBUSY).
func ProbeRekey(suite uint16) error {
	k, err := throwawayKeys(suite)
	if err != nil {
		return err
	}
	return withPair(unix.IPPROTO_TCP, func(fd int) error {
		if err := Install(fd, k, k, Options{}); err != nil {
			return err
		}
		return SetTX(fd, k)
	})
}

// ProbeTxMaxPayload reports whether the kernel has TLS_TX_MAX_PAYLOAD_LEN,
// which keeps records within the peer's record_size_limit: nil if so,
// ENOPROTOOPT on kernels from before it.
func ProbeTxMaxPayload() error {
	return withPair(unix.IPPROTO_TCP, func(fd int) error {
		if err := attachULP(fd); err != nil {
			return err
		}
		v := binary.NativeEndian.AppendUint16(nil, 4096)
		if err := setsockopt(fd, solTLS, tlsTXMaxPayloadLen, v); err != nil {
			return &InstallError{Step: StepMaxPayload, Err: err}
		}
		return nil
	})
}

// ProbeMPTCP reports whether the kernel opens MPTCP sockets (CONFIG_MPTCP
// and net.mptcp.enabled).
func ProbeMPTCP() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, ipprotoMPTCP)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// ProbeMPTCPULP reports whether kTLS attaches to a connected MPTCP socket.
// Released kernels refuse TCP_ULP there (ENOPROTOOPT or EOPNOTSUPP, from
// net/mptcp/sockopt.c); kTLS over MPTCP is a pending kernel series.
func ProbeMPTCPULP() error {
	return withPair(ipprotoMPTCP, func(fd int) error {
		return attachULP(fd)
	})
}

// attachULP is Install's first step, with its error classification.
func attachULP(fd int) error {
	if err := unix.SetsockoptString(fd, unix.SOL_TCP, unix.TCP_ULP, "tls"); err != nil {
		return ulpError(err)
	}
	return nil
}

// withPair calls f with the client end of a connected loopback pair of
// the given protocol, then closes both ends.
func withPair(proto int, f func(fd int) error) error {
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(l)
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(l, lo); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(l, 1); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(l)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(c)
	// A loopback connect completes into the backlog without accept.
	if err := unix.Connect(c, sa); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer unix.Close(s)
	return f(c)
}
