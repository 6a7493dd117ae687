package rekey

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// An Op is what the kernel asks of the daemon in a KeyUpdate upcall on a
// socket a kernel consumer owns (proposal v7, genl.KeyUpdateType): the
// consumer reads and writes the socket, the daemon only changes its keys
// and sends the KeyUpdate message.
type Op int

const (
	// OpSend: send KeyUpdate(update_requested), then rekey TX.
	OpSend Op = iota + 1
	// OpReceived: the consumer saw the peer's KeyUpdate; rekey RX.
	OpReceived
	// OpReceivedRequestUpdate: rekey RX, send
	// KeyUpdate(update_not_requested), rekey TX.
	OpReceivedRequestUpdate
)

func (o Op) String() string {
	switch o {
	case OpSend:
		return "send"
	case OpReceived:
		return "received"
	case OpReceivedRequestUpdate:
		return "received_request_update"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// KeySocket is what Step needs of a kTLS socket; KTLS is the real one.
// If it also has PeekRecord (as KTLS does), Step looks at what waits
// after a new RX key, to report a peer that closed during the update.
type KeySocket interface {
	SendRecord(typ uint8, data []byte) error
	SetTX(k ktls.Keys) error
	SetRX(k ktls.Keys) error
}

// A Peeker shows the next record without consuming it and without
// waiting: its content type and up to len(buf) bytes of it, or EAGAIN.
type Peeker interface {
	PeekRecord(buf []byte) (typ uint8, n int, err error)
}

// ErrPeerClosed: the peer ended the connection during an update, with
// close_notify or at the TCP level (reset, or the send found it gone).
var ErrPeerClosed = errors.New("rekey: the peer closed the connection")

// Keyed is the state of one connection's keys between updates.
type Keyed struct {
	Suite  tls13.CipherSuite
	TX, RX []byte // current application traffic secrets
}

// Step carries out op on a socket whose kTLS keys come from cur and
// returns the secrets after it: new slices for the directions it
// changed (cur's for the others, shared). On error the socket may have
// one direction updated and not the other; the caller must end the TLS
// session (CloseNotify) and let the consumer drop the connection. Errors
// wrap ErrPeerClosed (the peer's close_notify or the TCP connection
// gone), a received *tls13.AlertError (the peer's fatal alert), or
// ErrUnsupported (this kernel cannot change kTLS keys).
func Step(sock KeySocket, cur Keyed, op Op) (next Keyed, err error) {
	next = cur
	var tx, rx []byte
	defer func() {
		if err != nil {
			clear(tx)
			clear(rx)
		}
	}()
	switch op {
	case OpSend, OpReceived, OpReceivedRequestUpdate:
	default:
		return cur, fmt.Errorf("rekey: unknown key update %v", op)
	}
	if op != OpSend {
		rx = tls13.NextTrafficSecret(cur.Suite, cur.RX)
		if err := setKeys(sock.SetRX, "TLS_RX", cur.Suite, rx); err != nil {
			return cur, err
		}
		next.RX = rx
	}
	if op != OpReceived {
		req := byte(updateRequested)
		if op == OpReceivedRequestUpdate {
			req = updateNotRequested
		}
		if err := sock.SendRecord(recordHandshake, []byte{msgKeyUpdate, 0, 0, 1, req}); err != nil {
			return cur, sendErr("sending KeyUpdate", err)
		}
		tx = tls13.NextTrafficSecret(cur.Suite, cur.TX)
		if err := setKeys(sock.SetTX, "TLS_TX", cur.Suite, tx); err != nil {
			return cur, err
		}
		next.TX = tx
	}
	if op != OpSend {
		if err := peekClosed(sock); err != nil {
			return cur, err
		}
	}
	return next, nil
}

func setKeys(set func(ktls.Keys) error, what string, suite tls13.CipherSuite, secret []byte) error {
	k := Keys(suite, tls13.TrafficSecret{Secret: secret})
	defer clear(k.Key)
	if err := set(k); err != nil {
		return wrapSetErr(what, err)
	}
	return nil
}

func sendErr(what string, err error) error {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("%w: %s: %w", ErrPeerClosed, what, err)
	}
	return fmt.Errorf("rekey: %s: %w", what, err)
}

// peekClosed reports a close_notify or an alert that the peer sent under
// the new RX keys and the consumer has not read yet.
func peekClosed(sock KeySocket) error {
	p, ok := sock.(Peeker)
	if !ok {
		return nil
	}
	var buf [2]byte
	typ, n, err := p.PeekRecord(buf[:])
	switch {
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EKEYEXPIRED):
		// Nothing yet, or the peer's next KeyUpdate: the consumer's.
		return nil
	case errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("%w: %w", ErrPeerClosed, err)
	case err != nil:
		// EBADMSG: the record does not open with the new key.
		return fmt.Errorf("rekey: the first record under the new RX key: %w", err)
	case typ != recordAlert:
		return nil
	case n == 2 && buf[1] == 0:
		return fmt.Errorf("%w: close_notify", ErrPeerClosed)
	case n == 2:
		return &tls13.AlertError{Alert: tls13.Alert(buf[1]), Received: true}
	}
	return errors.New("rekey: malformed alert record")
}

// CloseNotify sends a close_notify alert (under whatever TX key is
// installed): how the daemon ends a TLS session it gives up on.
func CloseNotify(sock interface{ SendRecord(uint8, []byte) error }) error {
	return sock.SendRecord(recordAlert, []byte{1, 0})
}

// PeekRecord shows the next record without consuming it or waiting
// (MSG_PEEK|MSG_DONTWAIT): EAGAIN when nothing is there. At end of stream
// it returns ECONNRESET.
func (s KTLS) PeekRecord(buf []byte) (uint8, int, error) {
	oob := make([]byte, unix.CmsgSpace(1))
	for {
		n, oobn, _, _, err := unix.Recvmsg(s.FD, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return 0, 0, err
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_TLS && m.Header.Type == tlsGetRecordType && len(m.Data) == 1 {
				return m.Data[0], n, nil
			}
		}
		if n == 0 {
			return 0, 0, syscall.ECONNRESET
		}
		return recordData, n, nil
	}
}

// TLS_GET_RECORD_TYPE (include/uapi/linux/tls.h).
const tlsGetRecordType = 2
