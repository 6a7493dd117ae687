package genl

import (
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A Conn sends ACCEPT and DONE on one generic netlink socket. It is safe
// for concurrent use; requests are serialized (each is a short
// request/reply exchange).
//
// A Conn must not be used to receive READY notifications: a multicast
// message arriving between a request and its reply makes the reply
// check fail. Use a Listener, which has its own socket.
type Conn struct {
	c      *genetlink.Conn
	family uint16
	caps   Capabilities
	raw    *rawAccept // ACCEPT's own socket (Dial); nil: ACCEPT goes on c
	stats  counters
}

// Dial opens a generic netlink socket and returns a Conn on it; see
// NewConn for what it checks.
func Dial() (*Conn, error) {
	gc, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("genl: opening generic netlink socket: %w", err)
	}
	// Best effort: with extended ACKs, kernel error messages ("Unknown
	// attribute type") end up in netlink.OpError.Message.
	_ = gc.SetOption(netlink.ExtendedAcknowledge, true)
	c, err := NewConn(gc)
	if err != nil {
		gc.Close()
		return nil, err
	}
	if c.raw, err = openRawAccept(c.family, &c.stats); err != nil {
		gc.Close()
		return nil, err
	}
	c.raw.keyUpdate = c.caps.SessionID
	return c, nil
}

// NewConn resolves the "handshake" family on c and probes which
// attributes its ACCEPT and DONE operations accept. A missing family is an
// error wrapping ErrNoFamily. A failed probe is not an error: the Conn then
// assumes the attributes every kernel with the family accepts, and says so
// in Capabilities.
//
// NewConn is for tests (c from genltest) and for callers that configure
// the socket themselves; most callers use Dial. On error, c is left open.
func NewConn(c *genetlink.Conn) (*Conn, error) {
	f, err := getFamily(c)
	if err != nil {
		return nil, err
	}
	caps := Capabilities{FamilyID: f.ID, Version: f.Version}
	accept, done, err := probe(c, f.ID)
	if err != nil {
		caps.ProbeErr = err
		caps.AcceptAttrs, caps.DoneAttrs = fallbackAccept, fallbackDone
	} else {
		caps.Probed = true
		caps.AcceptAttrs = accept.attrs
		caps.setDone(done)
	}
	return &Conn{c: c, family: f.ID, caps: caps}, nil
}

// getFamily resolves the handshake family.
func getFamily(c *genetlink.Conn) (genetlink.Family, error) {
	f, err := c.GetFamily(familyName)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return f, fmt.Errorf("%w (%w)", ErrNoFamily, err)
	case err != nil:
		return f, fmt.Errorf("genl: resolving family %q: %w", familyName, err)
	}
	return f, nil
}

// Capabilities returns what NewConn learned about the kernel.
func (c *Conn) Capabilities() Capabilities { return c.caps.clone() }

// Accept takes the oldest pending handshake request. When nothing is
// pending it returns an error wrapping ErrNoRequest (and unix.EAGAIN).
// Other errors wrap ErrRetry (try again after a backoff), ErrBadReply (a
// request was dequeued but its reply is unusable; see below), or neither
// (fatal for this Conn); errors.go describes the classes, and Stats counts
// them.
//
// The kernel acts on the calling OS thread while handling ACCEPT: it
// installs the socket as a new fd in this process and links the
// consumer's keyring into the process keyring of the calling thread.
// Keyrings are per-thread credentials, so a caller that reads keys for the
// request must call runtime.LockOSThread before Accept and read them on the
// same goroutine. Accept sends on the calling goroutine's thread: a Conn
// from Dial in raw system calls on its own socket (see rawAccept), one
// from NewConn through genetlink.Conn, which also sends synchronously.
//
// If the returned error is not nil but r.FD >= 0, the kernel handed over
// a socket whose reply could not be decoded: the caller still owns r.FD and
// must send DONE for it (for example with EIO) and close it.
func (c *Conn) Accept() (r Request, err error) {
	if c.raw != nil {
		r, err = c.raw.accept()
	} else {
		r, err = c.acceptGenetlink()
	}
	c.stats.count(err)
	return r, err
}

// acceptGenetlink is Accept on a Conn from NewConn.
func (c *Conn) acceptGenetlink() (Request, error) {
	b, err := encodeAcceptRequest()
	if err != nil {
		return Request{FD: -1}, err
	}
	req := genetlink.Message{
		Header: genetlink.Header{Command: cmdAccept, Version: familyVersion},
		Data:   b,
	}
	// No Acknowledge flag: ACCEPT has a reply message, and the kernel
	// would queue a separate ACK after it that breaks the next request.
	msgs, err := c.c.Execute(req, c.family, netlink.Request)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return Request{FD: -1}, fmt.Errorf("%w (%w)", ErrNoRequest, err)
	case err != nil:
		var oe *netlink.OpError
		if errors.As(err, &oe) {
			var e unix.Errno
			if errors.As(oe.Err, &e) {
				return Request{FD: -1}, kernelErr(e)
			}
		}
		return Request{FD: -1}, exchangeErr("exchange", err)
	}
	for _, m := range msgs {
		if m.Header.Command == cmdAccept {
			return decodeAccept(m.Data, c.caps.SessionID)
		}
	}
	return Request{FD: -1}, fmt.Errorf("%w: genl: ACCEPT: kernel sent no reply message", ErrBadReply)
}

// Done reports the result of a handshake. Send it before closing d.FD: the
// kernel looks the fd up in this process. STATUS and SOCKFD are always
// sent; REMOTE_AUTH only if the kernel's DONE policy has it, as an
// attribute the policy lacks would make the kernel reject the whole
// message. Likewise d.SessionID goes only to a kernel whose DONE policy
// has SESSION_ID (Capabilities.SessionID); elsewhere it is left out, the
// DONE still goes, and Stats.SessionIDOmitted counts it.
func (c *Conn) Done(d Done) error {
	b, omitted, err := encodeDone(d, c.caps.DoneAttrs, c.caps.SessionID)
	if err != nil {
		return err
	}
	if omitted {
		c.stats.sessionIDOmitted.Add(1)
	}
	req := genetlink.Message{
		Header: genetlink.Header{Command: cmdDone, Version: familyVersion},
		Data:   b,
	}
	// DONE has no reply message; the ACK carries its error status.
	if _, err := c.c.Execute(req, c.family, netlink.Request|netlink.Acknowledge); err != nil {
		return fmt.Errorf("genl: DONE for fd %d (status %d): %w", d.FD, uint64(d.Status), err)
	}
	return nil
}

// Close closes the sockets.
func (c *Conn) Close() error {
	if c.raw != nil {
		c.raw.close()
	}
	return c.c.Close()
}
