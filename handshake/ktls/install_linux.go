package ktls

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket options (include/uapi/linux/tls.h; TCP_ULP from linux/tcp.h).
const (
	solTLS             = 282 // SOL_TLS
	tlsTX              = 1   // TLS_TX
	tlsRX              = 2   // TLS_RX
	tlsTXMaxPayloadLen = 5   // TLS_TX_MAX_PAYLOAD_LEN, newer kernels only
)

// Installation steps, as InstallError.Step names them.
const (
	StepULP        = "TCP_ULP"
	StepMaxPayload = "TLS_TX_MAX_PAYLOAD_LEN"
	StepTX         = "TLS_TX"
	StepRX         = "TLS_RX"
)

var (
	// ErrULPUnsupported means this socket cannot take the TLS ULP
	// although the kernel has it: TCP_ULP failed with EOPNOTSUPP or
	// ENOPROTOOPT, as on MPTCP sockets (released kernels have no kTLS
	// over MPTCP). A daemon reports EOPNOTSUPP to the consumer.
	ErrULPUnsupported = errors.New("ktls: socket cannot use the TLS ULP: MPTCP or not TCP")

	// ErrNoKTLS means the kernel has no "tls" ULP: TCP_ULP failed with
	// ENOENT because the tls module is missing or CONFIG_TLS is off.
	// That is a host problem, not a property of the socket, so it is
	// kept apart from ErrULPUnsupported; a daemon reports EIO and says
	// to load the tls module.
	ErrNoKTLS = errors.New("ktls: kernel has no TLS ULP: tls module missing or CONFIG_TLS off")
)

// An InstallError says which step of installing kTLS failed: a
// setsockopt, or building the crypto_info for TLS_TX or TLS_RX. It unwraps
// to the cause (an errno for setsockopt) and, for TCP_ULP, to
// ErrULPUnsupported or ErrNoKTLS.
type InstallError struct {
	Step string // StepULP, StepMaxPayload, StepTX or StepRX
	Err  error
	kind error
}

func (e *InstallError) Error() string {
	s := "ktls: " + e.Step + ": " + strings.TrimPrefix(e.Err.Error(), "ktls: ")
	if e.kind != nil {
		s += " (" + strings.TrimPrefix(e.kind.Error(), "ktls: ") + ")"
	}
	return s
}

func (e *InstallError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.kind}
}

// Options tune Install.
type Options struct {
	// TxMaxPayload, if not 0, caps the plaintext of each record the
	// kernel sends (TLS_TX_MAX_PAYLOAD_LEN; for TLS 1.3 pass the peer's
	// record_size_limit minus 1, see MaxPayload). On kernels without the
	// option Install fails with ErrNoMaxPayload rather than send records
	// the peer said it cannot take.
	TxMaxPayload uint16
}

// Install turns the connected TCP socket fd into a kTLS socket: it
// attaches the "tls" ULP, then installs tx and then rx. Both directions
// must use the same suite. The handshake must not have read past its last
// record: the kernel decrypts whatever is still queued on the socket.
//
// A failure leaves the socket unusable for plaintext; the caller reports
// it to the kernel consumer and closes its fd. Errors are *InstallError.
func Install(fd int, tx, rx Keys, o Options) error {
	return install(setsockopt, fd, tx, rx, o)
}

// setsockoptFunc is setsockopt(2). install and setKeys take it as a
// parameter so that tests can make each step fail: a real kernel fails
// TLS_TX or TLS_RX after the ULP is attached only in contrived states.
type setsockoptFunc func(fd, level, opt int, b []byte) error

// ulpError classifies a refused TCP_ULP: the socket cannot take the ULP
// (an MPTCP socket today, or not TCP), or the kernel has no kTLS.
func ulpError(err error) error {
	e := &InstallError{Step: StepULP, Err: err}
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOPROTOOPT):
		e.kind = ErrULPUnsupported
	case errors.Is(err, unix.ENOENT):
		e.kind = ErrNoKTLS
	}
	return e
}

func install(set setsockoptFunc, fd int, tx, rx Keys, o Options) error {
	if err := set(fd, unix.SOL_TCP, unix.TCP_ULP, []byte("tls")); err != nil && !ulpIsTLS(fd, err) { // EEXIST after AttachULP
		return ulpError(err)
	}
	if o.TxMaxPayload != 0 {
		v := binary.NativeEndian.AppendUint16(nil, o.TxMaxPayload)
		if err := set(fd, solTLS, tlsTXMaxPayloadLen, v); err != nil {
			return maxPayloadError(err)
		}
	}
	if err := setKeys(set, fd, tlsTX, StepTX, tx); err != nil {
		return err
	}
	return setKeys(set, fd, tlsRX, StepRX, rx)
}

// SetTX installs the keys for records this side sends: at Install, and
// again after sending a KeyUpdate (Linux ≥ 6.14).
func SetTX(fd int, k Keys) error { return setKeys(setsockopt, fd, tlsTX, StepTX, k) }

// SetRX installs the keys for records this side receives: at Install,
// and again after receiving a KeyUpdate (Linux ≥ 6.14), when reads fail
// with EKEYEXPIRED until it is done.
func SetRX(fd int, k Keys) error { return setKeys(setsockopt, fd, tlsRX, StepRX, k) }

func setKeys(set setsockoptFunc, fd, opt int, step string, k Keys) error {
	b, err := CryptoInfo(k)
	if err != nil {
		return &InstallError{Step: step, Err: err}
	}
	defer clear(b)
	if err := set(fd, solTLS, opt, b); err != nil {
		return &InstallError{Step: step, Err: err}
	}
	return nil
}

// setsockopt passes b to the kernel without copying it into a string, so
// that key bytes do not outlive the call. b must not be empty.
func setsockopt(fd, level, opt int, b []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// Protocol returns the socket's protocol (SO_PROTOCOL): 6 for TCP, 262
// for MPTCP, on which released kernels cannot install kTLS.
func Protocol(fd int) (int, error) {
	p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return 0, fmt.Errorf("ktls: getsockopt SO_PROTOCOL: %w", err)
	}
	return p, nil
}
