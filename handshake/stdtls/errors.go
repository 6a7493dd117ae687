package stdtls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"syscall"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// handshakeError turns what crypto/tls returned into the errors the daemon
// maps to DONE statuses:
//
//   - an alert the peer sent: *tls13.AlertError with Received set;
//   - an alert crypto/tls sent: *tls13.AlertError wrapping crypto/tls's
//     error (and through it x509.UnknownAuthorityError,
//     x509.CertificateInvalidError, x509.HostnameError, or whatever a
//     VerifyConnection callback returned);
//   - the peer closing or resetting the connection: an error wrapping
//     io.ErrUnexpectedEOF;
//   - the context ending: an error wrapping ctx.Err(), and for a passed
//     deadline also os.ErrDeadlineExceeded.
func handshakeError(ctx context.Context, err error, c *recordConn, kl *keyLog, isClient bool, suite uint16) error {
	if a, ok := receivedAlert(err); ok {
		return &tls13.AlertError{Alert: a, Received: true}
	}
	if a, ok := sentAlert(c, kl, isClient, suite); ok {
		return &tls13.AlertError{Alert: a, Err: err}
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return fmt.Errorf("stdtls: handshake: %w (%w)", cerr, os.ErrDeadlineExceeded)
		}
		return fmt.Errorf("stdtls: handshake: %w", cerr)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			// The deadline we copied from ctx fired just before ctx's
			// own timer did.
			return fmt.Errorf("stdtls: handshake: %w (%w)", context.DeadlineExceeded, err)
		}
		return fmt.Errorf("stdtls: handshake: %w", err)
	}
	if peerClosed(err) {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("stdtls: peer closed the connection during the handshake: %w", err)
		}
		return fmt.Errorf("stdtls: peer closed the connection during the handshake: %w (%w)", io.ErrUnexpectedEOF, err)
	}
	return fmt.Errorf("stdtls: handshake: %w", err)
}

func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// receivedAlert recognises the error crypto/tls returns for a fatal alert
// from the peer: a *net.OpError with Op "remote error" whose Err is
// crypto/tls's unexported alert type (a uint8).
func receivedAlert(err error) (tls13.Alert, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 {
		return 0, false
	}
	return tls13.Alert(v.Uint()), true
}

// sentAlert finds the alert crypto/tls sent when a handshake failed. A
// failing handshake's alert is the last record it wrote. Before the
// handshake keys are in place the alert is plaintext; afterwards it is
// protected under this side's handshake traffic secret or, for a server
// that has sent its Finished, its application traffic secret. Both are in
// the key log, so the record is opened with each at every sequence number
// it could have (the number of protected records written before it). The
// AEAD tag makes a wrong guess fail, so the answer is exact: an alert is
// reported only if crypto/tls really sent it.
func sentAlert(c *recordConn, kl *keyLog, isClient bool, suite uint16) (tls13.Alert, bool) {
	rec, encrypted, ok := c.w.lastRecord()
	if !ok {
		return 0, false
	}
	body := rec[recordHeaderLen:]
	switch rec[0] {
	case recordTypeAlert:
		if len(body) == 2 {
			return tls13.Alert(body[1]), true
		}
		return 0, false
	case recordTypeApplicationData:
	default:
		return 0, false
	}
	secrets := [][]byte{kl.serverHS, kl.serverAP}
	if isClient {
		secrets = [][]byte{kl.clientHS, kl.clientAP}
	}
	suites := []tls13.CipherSuite{tls13.CipherSuite(suite)}
	if !suites[0].Supported() {
		suites = tls13.DefaultCipherSuites
	}
	for _, s := range suites {
		for _, secret := range secrets {
			if len(secret) != s.Hash().Size() {
				continue
			}
			for seq := encrypted - 1; seq >= 0; seq-- {
				typ, content, err := openRecord(s, secret, uint64(seq), rec)
				if err != nil {
					continue
				}
				if typ == recordTypeAlert && len(content) == 2 {
					return tls13.Alert(content[1]), true
				}
				return 0, false
			}
		}
	}
	return 0, false
}
