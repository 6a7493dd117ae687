package handshake

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

var (
	// errNoKey: the request's credentials are missing or unreadable.
	errNoKey = errors.New("no usable key")
	// errPolicy: the policy refuses the request.
	errPolicy = errors.New("policy")
	// errUnsupported: a socket or mode this daemon cannot serve.
	errUnsupported = errors.New("not supported")
)

// doneStatus maps why a request failed to the status DONE reports, which
// the kernel consumers act on (kernel-interfaces.md 1.9, docs/design.md).
func doneStatus(err error) syscall.Errno {
	var alert *tls13.AlertError
	var update *updateError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &update):
		return update.status
	case errors.Is(err, errDraining), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		// Stopping, or out of file descriptors: passing conditions on
		// our side. ETIMEDOUT is the status both consumers retry on:
		// SunRPC's xs_tls_handshake_done passes only 0, EACCES and
		// ETIMEDOUT through and turns anything else into EACCES; the
		// nvme host fails the queue with it and reconnects.
		return syscall.ETIMEDOUT
	case errors.Is(err, errNoKey):
		return syscall.ENOKEY
	case errors.Is(err, errPolicy):
		return syscall.EACCES
	case errors.Is(err, errUnsupported), errors.Is(err, ktls.ErrULPUnsupported), errors.Is(err, ktls.ErrNoMaxPayload):
		return syscall.EOPNOTSUPP
	case errors.As(err, &alert) && alert.Alert == tls13.AlertUnknownPSKIdentity:
		// Sent (the client offered no identity we hold) or received (the
		// server holds none of ours).
		return syscall.EKEYREJECTED
	case errors.As(err, &alert) && !alert.Received && alert.Alert == tls13.AlertInternalError:
		return syscall.EIO
	case errors.As(err, &alert):
		return syscall.EACCES
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ENOTCONN):
		// The peer hung up (perhaps after refusing us, before the keys
		// were installed) or took too long: ask the consumer to retry.
		return syscall.ETIMEDOUT
	}
	return syscall.EIO
}
