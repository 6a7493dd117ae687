package tls13

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// A Conn is a TLS 1.3 PSK connection over an underlying net.Conn.
//
// It reads the underlying connection one record at a time, header first
// and then exactly the body, so when Handshake returns nothing after the
// peer's last handshake record has been consumed: the socket can go to
// kTLS (see Handoff). After the handshake it can also carry application
// data in userspace, answer KeyUpdate and send close_notify.
//
// Read and Write may be called concurrently; Handshake runs once.
type Conn struct {
	conn     net.Conn
	config   *Config
	isClient bool

	handshakeMu   sync.Mutex
	handshakeErr  error
	handshakeDone bool
	session       Session // secrets live in in/out, not here

	inMu  sync.Mutex
	in    halfConn
	hdr   [recordHeaderLen]byte
	rbuf  []byte // body of the current record
	hand  []byte // handshake bytes not yet consumed
	input []byte // application data not yet returned by Read
	// readErr is sticky: a failed read leaves the stream unusable.
	readErr error
	// inHandshake allows middlebox change_cipher_spec records, once
	// helloSeen: from the first ClientHello, sent or received, until
	// the peer's Finished (RFC 8446, 5).
	inHandshake bool
	helloSeen   bool
	// keyUpdates counts KeyUpdates received since the last application
	// data, so that a peer cannot keep us rekeying for nothing.
	keyUpdates int
	// useless counts consecutive records that carried nothing, so that
	// a peer cannot keep us busy with them.
	useless int
	// skipEarly is how many bytes of the client's 0-RTT data a server
	// that ignored early_data may still discard (RFC 8446, 4.2.10).
	skipEarly int

	outMu  sync.Mutex
	out    halfConn
	obuf   []byte // records not yet written
	maxOut int    // largest plaintext per record we may send
	// sentAlert: a fatal alert or close_notify was sent; nothing more.
	sentAlert bool
	writeErr  error
}

// Client returns a client-side Conn; the handshake runs on first use or
// by Handshake.
func Client(conn net.Conn, config *Config) *Conn {
	return &Conn{conn: conn, config: config, isClient: true, maxOut: maxPlaintext}
}

// Server returns a server-side Conn.
func Server(conn net.Conn, config *Config) *Conn {
	return &Conn{conn: conn, config: config, maxOut: maxPlaintext}
}

// Handshake runs the handshake if it has not run yet. ctx bounds it: its
// deadline becomes the connection's deadline for the duration, and
// cancelling ctx interrupts it. Errors carry an *AlertError when TLS
// failed (the alert was sent or received), wrap io.ErrUnexpectedEOF when
// the peer hung up, and os.ErrDeadlineExceeded or ctx.Err() on timeout.
func (c *Conn) Handshake(ctx context.Context) error {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if c.handshakeDone || c.handshakeErr != nil {
		return c.handshakeErr
	}
	c.inMu.Lock()
	defer c.inMu.Unlock()
	c.outMu.Lock()
	defer c.outMu.Unlock()

	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.conn.SetDeadline(time.Unix(1, 0)) // unblock any pending I/O
		close(interrupted)
	})

	var err error
	if err = c.config.check(c.isClient); err == nil {
		c.inHandshake = true
		if c.isClient {
			err = c.clientHandshake(ctx)
		} else {
			err = c.serverHandshake(ctx)
		}
		c.inHandshake = false
	}

	if !stop() {
		<-interrupted
	}
	c.conn.SetDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The socket deadline is ctx's deadline, and may fire a hair
			// before ctx itself expires: say which limit it was.
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
			} else if _, ok := ctx.Deadline(); ok {
				err = fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
			}
		}
		c.fail(err)
		c.handshakeErr = err
		return err
	}
	c.handshakeDone = true
	return nil
}

// fail sends the alert an *AlertError of ours carries, once, and makes
// the connection unusable. Callers hold outMu.
func (c *Conn) fail(err error) {
	var ae *AlertError
	if errors.As(err, &ae) && !ae.Received && !c.sentAlert {
		c.sendAlertLocked(ae.Alert)
	} else if !errors.As(err, &ae) && !isIOError(err) && !c.sentAlert {
		// A local failure that is not the peer's fault nor the network's.
		c.sendAlertLocked(AlertInternalError)
	}
	if c.writeErr == nil {
		c.writeErr = err
	}
	if c.readErr == nil {
		c.readErr = err
	}
	c.in.zero()
	c.out.zero()
}

func isIOError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne)
}

// sendAlertLocked writes a fatal alert (close_notify is a warning),
// protected with the current write keys.
func (c *Conn) sendAlertLocked(a Alert) {
	level := byte(2)
	if a == AlertCloseNotify || a == AlertUserCanceled {
		level = 1
	}
	c.writeRecordLocked(recordTypeAlert, []byte{level, byte(a)})
	c.flushLocked()
	c.sentAlert = true
}

// readRecordLocked reads exactly one record: five header bytes, then the
// body the header announces, and not a byte more. It returns the content
// type and content, decrypted when read keys are set.
func (c *Conn) readRecordLocked() (uint8, []byte, error) {
	if c.readErr != nil {
		return 0, nil, c.readErr
	}
	for {
		typ, data, err := c.readOneRecord()
		if err != nil {
			return 0, nil, err
		}
		if data == nil {
			// Dropped: change_cipher_spec or skipped early data.
			if c.useless++; c.useless > 16 {
				return 0, nil, alertf(AlertUnexpectedMessage, "too many records without content")
			}
			continue
		}
		if len(data) == 0 && typ == recordTypeApplicationData {
			if c.useless++; c.useless > 16 {
				return 0, nil, alertf(AlertUnexpectedMessage, "too many empty records")
			}
		} else {
			c.useless = 0
		}
		return typ, data, nil
	}
}

func (c *Conn) readOneRecord() (uint8, []byte, error) {
	if _, err := io.ReadFull(c.conn, c.hdr[:]); err != nil {
		return 0, nil, readError(err, c.inHandshake)
	}
	typ, n := c.hdr[0], int(c.hdr[3])<<8|int(c.hdr[4])
	if c.hdr[1] != 3 {
		return 0, nil, alertf(AlertDecodeError, "not a TLS record (version %#02x%02x)", c.hdr[1], c.hdr[2])
	}
	if n > maxCiphertext || (!c.in.keyed() && n > maxPlaintext) {
		return 0, nil, alertf(AlertRecordOverflow, "record of %d bytes", n)
	}
	if cap(c.rbuf) < n {
		c.rbuf = make([]byte, n, max(n, 512))
	}
	body := c.rbuf[:n]
	if _, err := io.ReadFull(c.conn, body); err != nil {
		return 0, nil, readError(err, true)
	}

	switch {
	case typ == recordTypeChangeCipherSpec:
		// Middlebox compatibility (RFC 8446, 5): a single 0x01 byte,
		// unprotected, after the first ClientHello and before the
		// peer's Finished, is dropped; never inside a handshake message.
		if !c.inHandshake || !c.helloSeen || len(c.hand) != 0 || n != 1 || body[0] != 1 {
			return 0, nil, alertf(AlertUnexpectedMessage, "change_cipher_spec record")
		}
		return typ, nil, nil
	case !c.in.keyed():
		if typ == recordTypeApplicationData && c.skipEarly >= n {
			c.skipEarly -= n
			return typ, nil, nil
		}
		if typ != recordTypeHandshake && typ != recordTypeAlert {
			return 0, nil, alertf(AlertUnexpectedMessage, "unprotected record of type %d", typ)
		}
		if n == 0 {
			return 0, nil, alertf(AlertDecodeError, "empty record of type %d", typ)
		}
		return typ, body, nil
	case typ == recordTypeAlert && c.inHandshake && !c.isClient:
		// A client that fails on our ServerHello has no keys yet and
		// alerts in the clear; accept that to report why, since it ends
		// the connection anyway. A server has its keys before it sends
		// anything we could decrypt, so a client refuses a plaintext
		// alert once its read keys are set (RFC 8446, 5: records after
		// the keys change are protected).
		return typ, body, nil
	case typ != recordTypeApplicationData:
		return 0, nil, alertf(AlertUnexpectedMessage, "unprotected record of type %d after keys were set", typ)
	}
	inner, data, err := c.in.open(c.hdr[:], body)
	if err != nil {
		if c.skipEarly >= n {
			c.skipEarly -= n
			return typ, nil, nil
		}
		return 0, nil, err
	}
	c.skipEarly = 0 // the first record that decrypts ends the early data
	switch inner {
	case recordTypeHandshake, recordTypeAlert:
		if len(data) == 0 {
			return 0, nil, alertf(AlertUnexpectedMessage, "empty protected record of type %d", inner)
		}
	case recordTypeApplicationData:
	default:
		return 0, nil, alertf(AlertUnexpectedMessage, "protected record of type %d", inner)
	}
	return inner, data, nil
}

func readError(err error, midRecord bool) error {
	if err == io.EOF && !midRecord {
		return io.EOF
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("tls13: connection closed by peer: %w", io.ErrUnexpectedEOF)
	}
	if errors.Is(err, syscall.ECONNRESET) {
		// The peer went away with data unread: as good as a hang-up.
		return fmt.Errorf("tls13: %w: %w", io.ErrUnexpectedEOF, err)
	}
	return fmt.Errorf("tls13: read: %w", err)
}

// alertFromRecord turns a received alert record into an error: io.EOF
// for close_notify, an *AlertError otherwise.
func alertFromRecord(data []byte) error {
	if len(data) != 2 {
		return alertf(AlertDecodeError, "alert record of %d bytes", len(data))
	}
	if Alert(data[1]) == AlertCloseNotify {
		return io.EOF
	}
	return &AlertError{Alert: Alert(data[1]), Received: true}
}

// maxHandshakeMessage bounds a handshake message; ours are far smaller.
const maxHandshakeMessage = 1 << 16

// maxPostHandshakeMessage bounds what a post-handshake message may
// buffer: a KeyUpdate is 5 bytes, and the NewSessionTickets a client
// skips are a few hundred (a ticket is at most 2^16-1 bytes, but nobody
// sends such).
const maxPostHandshakeMessage = 1 << 14

// maxKeyUpdates is how many KeyUpdates in a row, with no application
// data between them, we answer before deciding the peer is only making
// us work. BoringSSL allows 32, but a sender that updates every N bytes
// written may send a burst after one large write: tlshd-go's own
// `connect --key-update-bytes 1000` sends 33 in a row after a 32 KiB
// write.
const maxKeyUpdates = 256

// readHandshakeLocked returns the next whole handshake message, header
// included, assembled from as many records as it takes. During the
// handshake the message must be of type want (0 accepts any).
func (c *Conn) readHandshakeLocked() ([]byte, error) {
	for len(c.hand) < 4 || len(c.hand) < 4+msgLen(c.hand) {
		if len(c.hand) >= 4 && msgLen(c.hand) > maxHandshakeMessage {
			return nil, alertf(AlertUnexpectedMessage, "handshake message of %d bytes", msgLen(c.hand))
		}
		typ, data, err := c.readRecordLocked()
		if err != nil {
			return nil, c.inHandshakeEOF(err)
		}
		switch typ {
		case recordTypeHandshake:
			c.hand = append(c.hand, data...)
		case recordTypeAlert:
			return nil, c.inHandshakeEOF(alertFromRecord(data))
		default:
			return nil, alertf(AlertUnexpectedMessage, "application data during the handshake")
		}
	}
	n := 4 + msgLen(c.hand)
	msg := c.hand[:n:n]
	c.hand = c.hand[n:]
	if len(c.hand) == 0 {
		c.hand = nil
	}
	return msg, nil
}

func (c *Conn) inHandshakeEOF(err error) error {
	if err == io.EOF && c.inHandshake {
		return fmt.Errorf("tls13: peer closed the connection during the handshake: %w", io.ErrUnexpectedEOF)
	}
	return err
}

func msgLen(b []byte) int { return int(b[1])<<16 | int(b[2])<<8 | int(b[3]) }

// expectMessage reads the next handshake message and checks its type.
func (c *Conn) expectMessage(typ uint8, name string) ([]byte, error) {
	msg, err := c.readHandshakeLocked()
	if err != nil {
		return nil, err
	}
	if msg[0] != typ {
		return nil, alertf(AlertUnexpectedMessage, "got handshake message %d, want %s", msg[0], name)
	}
	return msg, nil
}

// checkKeyChange enforces that no handshake message straddles a key
// change (RFC 8446, 5.1).
func (c *Conn) checkKeyChange() error {
	if len(c.hand) != 0 {
		return alertf(AlertUnexpectedMessage, "handshake data across a key change")
	}
	return nil
}

// writeRecordLocked queues data as records of type typ, split to the
// peer's record size; flushLocked sends them.
func (c *Conn) writeRecordLocked(typ uint8, data []byte) error {
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), c.maxOut)
		var err error
		if c.obuf, err = c.out.seal(c.obuf, typ, data[:n], 0); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func (c *Conn) flushLocked() error {
	if len(c.obuf) == 0 {
		return nil
	}
	_, err := c.conn.Write(c.obuf)
	c.obuf = c.obuf[:0]
	if err != nil {
		return fmt.Errorf("tls13: write: %w", err)
	}
	return nil
}

// Read reads application data, running the handshake first if needed.
// It answers KeyUpdate, skips NewSessionTicket, and returns io.EOF after
// the peer's close_notify.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(context.Background()); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.inMu.Lock()
	defer c.inMu.Unlock()
	for len(c.input) == 0 {
		if err := c.readPostHandshakeLocked(); err != nil {
			if c.readErr == nil {
				c.readErr = err
			}
			return 0, err
		}
	}
	n := copy(p, c.input)
	c.input = c.input[n:]
	return n, nil
}

// readPostHandshakeLocked reads one record after the handshake and acts
// on it: application data goes to c.input.
func (c *Conn) readPostHandshakeLocked() error {
	typ, data, err := c.readRecordLocked()
	if err != nil {
		if ae := (*AlertError)(nil); errors.As(err, &ae) && !ae.Received {
			c.outMu.Lock()
			c.fail(err)
			c.outMu.Unlock()
		}
		return err
	}
	switch typ {
	case recordTypeApplicationData:
		if len(c.hand) != 0 {
			return c.failRead(alertf(AlertUnexpectedMessage, "application data inside a handshake message"))
		}
		if len(data) > 0 {
			c.keyUpdates = 0
		}
		c.input = data
		return nil
	case recordTypeAlert:
		return alertFromRecord(data)
	}
	c.hand = append(c.hand, data...)
	if len(c.hand) >= 4 && msgLen(c.hand) > maxPostHandshakeMessage {
		// Buffer no more than a message we could act on.
		return c.failRead(alertf(AlertUnexpectedMessage, "post-handshake message of %d bytes", msgLen(c.hand)))
	}
	for len(c.hand) >= 4 && len(c.hand) >= 4+msgLen(c.hand) {
		msg, _ := c.readHandshakeLocked() // whole message buffered: no I/O
		if err := c.handlePostHandshake(msg); err != nil {
			return c.failRead(err)
		}
	}
	return nil
}

func (c *Conn) failRead(err error) error {
	c.outMu.Lock()
	c.fail(err)
	c.outMu.Unlock()
	return err
}

func (c *Conn) handlePostHandshake(msg []byte) error {
	switch msg[0] {
	case typeNewSessionTicket:
		if c.isClient {
			return nil // tickets are for resumption, which we never do
		}
	case typeKeyUpdate:
		req, err := unmarshalKeyUpdate(msg)
		if err != nil {
			return err
		}
		if c.keyUpdates++; c.keyUpdates > maxKeyUpdates {
			return alertf(AlertUnexpectedMessage, "%d KeyUpdates without application data", c.keyUpdates)
		}
		if err := c.checkKeyChange(); err != nil {
			return err
		}
		if err := c.in.setTrafficSecret(c.in.suite, NextTrafficSecret(c.in.suite, c.in.secret)); err != nil {
			return err
		}
		if req == keyUpdateRequested {
			c.outMu.Lock()
			defer c.outMu.Unlock()
			return c.sendKeyUpdateLocked(keyUpdateNotRequested)
		}
		return nil
	}
	return alertf(AlertUnexpectedMessage, "post-handshake message %d", msg[0])
}

// KeyUpdate sends a KeyUpdate and switches to the next sending keys
// (RFC 8446, 4.6.3). With requestPeer the peer is asked to update too.
func (c *Conn) KeyUpdate(requestPeer bool) error {
	if err := c.Handshake(context.Background()); err != nil {
		return err
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	req := keyUpdateNotRequested
	if requestPeer {
		req = keyUpdateRequested
	}
	return c.sendKeyUpdateLocked(req)
}

func (c *Conn) sendKeyUpdateLocked(req uint8) error {
	if c.writeErr != nil {
		return c.writeErr
	}
	if err := c.writeRecordLocked(recordTypeHandshake, marshalKeyUpdate(req)); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		c.writeErr = err
		return err
	}
	return c.out.setTrafficSecret(c.out.suite, NextTrafficSecret(c.out.suite, c.out.secret))
}

// Write sends p as application data records.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(context.Background()); err != nil {
		return 0, err
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	if c.sentAlert {
		return 0, errors.New("tls13: write after close_notify")
	}
	if err := c.writeRecordLocked(recordTypeApplicationData, p); err != nil {
		c.writeErr = err
		return 0, err
	}
	if err := c.flushLocked(); err != nil {
		c.writeErr = err
		return 0, err
	}
	return len(p), nil
}

// CloseWrite sends close_notify and shuts down the sending side of the
// underlying connection if it can.
func (c *Conn) CloseWrite() error {
	c.outMu.Lock()
	if c.handshakeDoneLocked() && !c.sentAlert && c.writeErr == nil {
		c.sendAlertLocked(AlertCloseNotify)
	}
	c.outMu.Unlock()
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *Conn) handshakeDoneLocked() bool {
	// handshakeDone is only written under handshakeMu together with
	// outMu, so reading it under outMu is safe.
	return c.handshakeDone
}

// Close sends close_notify after a completed handshake and closes the
// underlying connection.
func (c *Conn) Close() error {
	c.outMu.Lock()
	if c.handshakeDoneLocked() && !c.sentAlert && c.writeErr == nil {
		c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.sendAlertLocked(AlertCloseNotify)
	}
	c.out.zero()
	c.outMu.Unlock()
	return c.conn.Close()
}

// State describes a finished handshake, without secrets.
func (c *Conn) State() Session {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	s := c.session
	s.TX, s.RX = TrafficSecret{}, TrafficSecret{}
	return s
}

// Handoff ends userspace TLS on a finished connection: it returns the
// Session with copies of both traffic secrets and the next sequence
// numbers, and forgets its own keys, so the Conn can no longer be used.
// Nothing the peer sent after its last consumed record has been read.
// The caller zeroes the Session (Session.Zero) once the keys are
// installed.
func (c *Conn) Handoff() (*Session, error) {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if !c.handshakeDone {
		return nil, errors.New("tls13: handoff before the handshake completed")
	}
	c.inMu.Lock()
	defer c.inMu.Unlock()
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if len(c.input) != 0 || len(c.hand) != 0 {
		return nil, errors.New("tls13: handoff with unread data buffered")
	}
	if c.in.secret == nil || c.out.secret == nil {
		return nil, errors.New("tls13: handoff of a connection without keys")
	}
	s := c.session
	s.TX = TrafficSecret{Secret: clone(c.out.secret), Seq: c.out.seq}
	s.RX = TrafficSecret{Secret: clone(c.in.secret), Seq: c.in.seq}
	c.in.zero()
	c.out.zero()
	err := errors.New("tls13: connection handed off")
	c.readErr, c.writeErr = err, err
	return &s, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
