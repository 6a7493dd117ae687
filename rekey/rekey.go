// Package rekey keeps the traffic keys of a TLS 1.3 connection fresh
// after it has been handed to kernel TLS: KeyUpdate (RFC 8446, 4.6.3) on a
// socket whose records the kernel protects.
//
// kTLS can change keys since Linux 6.14 (TLS_TX and TLS_RX set a second
// time): after delivering a KeyUpdate record the kernel refuses further
// reads (EKEYEXPIRED) until TLS_RX holds the next key, and TLS_TX takes
// the next key after our own KeyUpdate went out under the old one. Older
// kernels refuse the second TLS_TX/TLS_RX with EBUSY, which this package
// reports as ErrUnsupported.
//
// A Conn carries application data over the kTLS socket and answers the
// peer's KeyUpdates, as a userspace program using kTLS does (tlshd-go
// connect/serve --ktls). For sockets a kernel consumer owns (nvme, NFS)
// the kernel must ask the daemon to rekey through an upcall, which no
// released kernel has yet (the proposal v7 does): Step carries out one
// such request, and package session keeps the secrets between them.
package rekey

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/handshake/tlsrecord"
)

// ErrUnsupported: the kernel cannot change kTLS keys (Linux before 6.14).
var ErrUnsupported = errors.New("rekey: this kernel cannot replace kTLS keys (needs Linux 6.14 or later)")

// Record content types and handshake message types (RFC 8446).
const (
	recordAlert     = tlsrecord.TypeAlert
	recordHandshake = tlsrecord.TypeHandshake
	recordData      = tlsrecord.TypeApplicationData

	msgNewSessionTicket = 4
	msgKeyUpdate        = 24

	updateNotRequested = 0
	updateRequested    = 1
)

// Socket is what a Conn needs of a kTLS socket; KTLS is the real one.
type Socket interface {
	// SendRecord sends data as one record of content type typ.
	SendRecord(typ uint8, data []byte) error
	// RecvRecord reads from one record and returns its content type.
	RecvRecord(buf []byte) (typ uint8, n int, err error)
	// Write sends application data.
	Write(p []byte) (int, error)
	SetTX(k ktls.Keys) error
	SetRX(k ktls.Keys) error
}

// KTLS is a kTLS socket by file descriptor.
type KTLS struct {
	FD int
	// Deadline, if set, bounds how long SendRecord waits for room in
	// the send buffer (a peer that stopped reading): past it the send
	// fails, wrapping os.ErrDeadlineExceeded.
	Deadline time.Time
}

func (s KTLS) SendRecord(typ uint8, data []byte) error {
	return ktls.SendRecordBy(s.FD, typ, data, s.Deadline)
}
func (s KTLS) RecvRecord(buf []byte) (uint8, int, error) {
	return ktls.RecvRecord(s.FD, buf)
}
func (s KTLS) Write(p []byte) (int, error) { return syscall.Write(s.FD, p) }
func (s KTLS) SetTX(k ktls.Keys) error     { return ktls.SetTX(s.FD, k) }
func (s KTLS) SetRX(k ktls.Keys) error     { return ktls.SetRX(s.FD, k) }

// A Conn is a TLS 1.3 connection in kTLS whose keys it can update. Read
// and Write may be called concurrently.
type Conn struct {
	sock  Socket
	suite tls13.CipherSuite

	wmu     sync.Mutex
	tx      []byte // current sending traffic secret
	txCount int    // KeyUpdates sent
	werr    error  // sticky: the keys are out of step

	rmu     sync.Mutex
	rx      []byte
	rxCount int
	rbuf    []byte
	pending []byte // application data read but not yet returned
	rerr    error
}

// New takes over a session's secrets (copies; the caller zeroes its own)
// for a socket on which kTLS is installed with them.
func New(sock Socket, s *tls13.Session) *Conn {
	return &Conn{
		sock:  sock,
		suite: s.Suite,
		tx:    append([]byte(nil), s.TX.Secret...),
		rx:    append([]byte(nil), s.RX.Secret...),
		rbuf:  make([]byte, 1<<14+1),
	}
}

// Updates returns how many KeyUpdates this side sent and received.
func (c *Conn) Updates() (sent, received int) {
	c.wmu.Lock()
	sent = c.txCount
	c.wmu.Unlock()
	c.rmu.Lock()
	received = c.rxCount
	c.rmu.Unlock()
	return sent, received
}

// Update sends a KeyUpdate under the current keys and switches to the
// next ones; with requestPeer the peer is asked to update its own.
func (c *Conn) Update(requestPeer bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	req := byte(updateNotRequested)
	if requestPeer {
		req = updateRequested
	}
	return c.updateLocked(req)
}

func (c *Conn) updateLocked(req byte) error {
	if c.werr != nil {
		return c.werr
	}
	if err := c.sock.SendRecord(recordHandshake, []byte{msgKeyUpdate, 0, 0, 1, req}); err != nil {
		return fmt.Errorf("rekey: sending KeyUpdate: %w", err)
	}
	next := tls13.NextTrafficSecret(c.suite, c.tx)
	if err := c.sock.SetTX(Keys(c.suite, tls13.TrafficSecret{Secret: next})); err != nil {
		clear(next)
		// The peer will read with the next key from now on: the
		// connection cannot go on.
		c.werr = wrapSetErr("TLS_TX", err)
		return c.werr
	}
	clear(c.tx)
	c.tx = next
	c.txCount++
	return nil
}

func wrapSetErr(what string, err error) error {
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("%w (%s: %w)", ErrUnsupported, what, err)
	}
	return fmt.Errorf("rekey: installing the next %s key: %w", what, err)
}

// Write sends application data.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	return c.sock.Write(p)
}

// Read returns application data, acting on what else arrives: the peer's
// KeyUpdate switches the receiving keys (and, when requested, sends ours),
// NewSessionTickets are dropped, close_notify is io.EOF, any other alert
// an error.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		typ, n, err := c.sock.RecvRecord(c.rbuf)
		if err != nil {
			if err != io.EOF {
				err = fmt.Errorf("rekey: %w", err)
			}
			c.rerr = err
			return 0, err
		}
		switch typ {
		case recordData:
			c.pending = c.rbuf[:n]
		case recordHandshake:
			if err := c.handshakeMessages(c.rbuf[:n]); err != nil {
				c.rerr = err
				return 0, err
			}
		case recordAlert:
			if n == 2 && c.rbuf[1] == 0 {
				c.rerr = io.EOF
			} else if n == 2 {
				c.rerr = &tls13.AlertError{Alert: tls13.Alert(c.rbuf[1]), Received: true}
			} else {
				c.rerr = errors.New("rekey: malformed alert record")
			}
			return 0, c.rerr
		default:
			c.rerr = fmt.Errorf("rekey: record of type %d", typ)
			return 0, c.rerr
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// handshakeMessages handles the post-handshake messages of one record.
func (c *Conn) handshakeMessages(b []byte) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errors.New("rekey: truncated handshake message")
		}
		n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if len(b) < 4+n {
			return errors.New("rekey: handshake message split across records")
		}
		msg := b[:4+n]
		b = b[4+n:]
		switch msg[0] {
		case msgNewSessionTicket:
			// For resumption, which a kTLS connection never does.
		case msgKeyUpdate:
			if n != 1 || msg[4] > updateRequested {
				return errors.New("rekey: malformed KeyUpdate")
			}
			if len(b) != 0 {
				// RFC 8446, 5.1: a key change ends the record.
				return errors.New("rekey: data after KeyUpdate in one record")
			}
			next := tls13.NextTrafficSecret(c.suite, c.rx)
			if err := c.sock.SetRX(Keys(c.suite, tls13.TrafficSecret{Secret: next})); err != nil {
				clear(next)
				return wrapSetErr("TLS_RX", err)
			}
			clear(c.rx)
			c.rx = next
			c.rxCount++
			if msg[4] == updateRequested {
				c.wmu.Lock()
				err := c.updateLocked(updateNotRequested)
				c.wmu.Unlock()
				if err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("rekey: unexpected handshake message %d", msg[0])
		}
	}
	return nil
}

// Close sends close_notify; the socket stays open.
func (c *Conn) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return nil
	}
	c.werr = errors.New("rekey: closed")
	return c.sock.SendRecord(recordAlert, []byte{1, 0})
}

// Zero forgets the secrets.
func (c *Conn) Zero() {
	c.wmu.Lock()
	clear(c.tx)
	c.wmu.Unlock()
	c.rmu.Lock()
	clear(c.rx)
	c.rmu.Unlock()
}
