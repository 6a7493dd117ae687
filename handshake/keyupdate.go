package handshake

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/rekey"
	"github.com/tlshd-go/tlshd-go/rekey/session"
)

// KeyUpdates serves the proposed KeyUpdate upcalls (v7, message types
// ClientKeyUpdate and ServerKeyUpdate; see genl/keyupdate.go): after a
// first handshake the daemon keeps the session's secrets in Store and
// returns the id in DONE's SESSION_ID; a later request for the socket
// names that id and what to do, and the daemon changes the socket's kTLS
// keys (rekey.Step), stores the next generation under a new id, destroys
// the old one and returns the new id.
//
// It is on only when the Kernel reports, through a Capabilities method
// (genl.Conn has one), that the running kernel's DONE policy has
// SESSION_ID: on any other kernel (6.12, 7.3, the session-tags proposal
// whose DONE attribute 4 is a string) nothing is stored.
type KeyUpdates struct {
	// Store keeps the sessions; every call is made on the key thread.
	Store session.Store
	// Socket returns the kTLS socket behind a request's fd, whose
	// records must be sent by deadline (the request's); nil means the
	// real one (rekey.KTLS). Tests model kTLS here.
	Socket func(fd int, deadline time.Time) rekey.KeySocket
}

// socket is the request's kTLS socket; its records are sent by deadline
// (the request's), so a peer that stopped reading cannot hold the update
// (or the close_notify after a failed one) past it.
func (k *KeyUpdates) socket(fd int, deadline time.Time) rekey.KeySocket {
	if k.Socket != nil {
		return k.Socket(fd, deadline)
	}
	return rekey.KTLS{FD: fd, Deadline: deadline}
}

// keyUpdatesOn reports whether sessions are kept: a store is configured
// and the kernel speaks the KeyUpdate upcall.
func (d *Daemon) keyUpdatesOn() bool {
	if d.KeyUpdates == nil || d.KeyUpdates.Store == nil {
		return false
	}
	k, ok := d.Kernel.(interface{ Capabilities() genl.Capabilities })
	return ok && k.Capabilities().SessionID
}

// onKeyThread runs f on the key thread, where the store's keyring is
// possessed (a request built without one, in tests, runs it here).
func (r *request) onKeyThread(f func()) {
	if tk, ok := r.keys.(*threadKeyring); ok {
		tk.t.do(f)
		return
	}
	f()
}

// keepSession stores a finished first handshake's secrets for later
// KeyUpdate requests and puts the id into res for DONE. A failure is
// logged, not fatal: the connection works, only its keys cannot be
// updated (a later request finds no session and gets ENOKEY).
func (d *Daemon) keepSession(r *request, res *result) {
	s := res.session
	if s == nil || !d.keyUpdatesOn() {
		return
	}
	// Not logged: the id names the key that holds the secrets.
	st := &session.State{Suite: s.Suite, Client: r.kind.role == config.Client, Socket: socketInode(int(r.FD)),
		TX: s.TX.Secret, RX: s.RX.Secret}
	var id uint32
	var err error
	r.onKeyThread(func() { id, err = d.KeyUpdates.Store.Put(st) })
	if err != nil {
		d.log().Warn("keeping the session for key updates; this connection's keys cannot be updated", "peer", r.peer.String(), "err", err)
		return
	}
	res.sessionID = id
}

// socketInode identifies the socket behind fd (0 if fstat fails, which
// then matches no kept session of a socket that had one).
func socketInode(fd int) uint64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Ino
}

// An updateError is why a KeyUpdate request failed, with the status DONE
// reports for it (doneStatus).
type updateError struct {
	status syscall.Errno
	err    error
}

func (e *updateError) Error() string { return e.err.Error() }
func (e *updateError) Unwrap() error { return e.err }

// opOf maps the request's KEY_UPDATE_REQUEST to what rekey does.
func opOf(t genl.KeyUpdateType) (rekey.Op, bool) {
	switch t {
	case genl.KeyUpdateSend:
		return rekey.OpSend, true
	case genl.KeyUpdateReceived:
		return rekey.OpReceived, true
	case genl.KeyUpdateReceivedRequestUpdate:
		return rekey.OpReceivedRequestUpdate, true
	}
	return 0, false
}

// keyUpdate is the walk of a KeyUpdate request. Until the session is
// found nothing is touched: an unknown or stale id (state lost, expired,
// already replaced, of the other role or of another socket) gets ENOKEY
// at once. From then
// on any failure ends the TLS session (close_notify on the socket) and
// forgets it, so that the consumer, told by a non-zero status, drops the
// connection rather than go on with one direction updated and the other
// stale. The statuses (docs/design.md): ECONNRESET the peer closed
// (close_notify, or the TCP connection is gone), EPROTO the peer sent a
// fatal alert, EOPNOTSUPP this kernel's kTLS cannot change keys,
// ETIMEDOUT the KeyUpdate found no room in the send buffer before the
// request's deadline (a peer that stopped reading), ECONNABORTED
// anything else.
func (d *Daemon) keyUpdate(ctx context.Context, r *request, res *result) error {
	r.peer = peerAddr(int(r.FD))
	res.update = r.KeyUpdate.String()
	op, ok := opOf(r.KeyUpdate)
	if !ok {
		return &updateError{syscall.EINVAL, fmt.Errorf("key update request %v", r.KeyUpdate)}
	}
	if !d.keyUpdatesOn() {
		return &updateError{syscall.ENOKEY, errors.New("key update: this daemon keeps no sessions (no store, or the kernel's DONE has no SESSION_ID)")}
	}
	store := d.KeyUpdates.Store
	var st *session.State
	var err error
	r.onKeyThread(func() { st, err = store.Get(r.SessionID) })
	if err != nil {
		return &updateError{syscall.ENOKEY, fmt.Errorf("key update: unknown or stale session: %w", err)}
	}
	defer st.Zero()
	if st.Client != (r.kind.role == config.Client) {
		return &updateError{syscall.ENOKEY, fmt.Errorf("key update: %v request for a session this side served as the other role", r.MessageType)}
	}
	if st.Socket != socketInode(int(r.FD)) {
		return &updateError{syscall.ENOKEY, errors.New("key update: the session belongs to another socket")}
	}
	forget := func() { r.onKeyThread(func() { store.Delete(r.SessionID) }) }

	// The update waits on the peer only for room to send; like a
	// handshake it ends by the kernel's TIMEOUT (or the default) counted
	// from ACCEPT, so that a peer that stopped reading cannot strand it.
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = config.DefaultHandshakeTimeout
	}
	sock := d.KeyUpdates.socket(int(r.FD), r.accepted.Add(timeout))
	next, err := rekey.Step(sock, rekey.Keyed{Suite: st.Suite, TX: st.TX, RX: st.RX}, op)
	if err != nil {
		rekey.CloseNotify(sock)
		forget()
		return &updateError{stepStatus(err), fmt.Errorf("key update %v: %w (close_notify sent)", r.KeyUpdate, err)}
	}
	ns := &session.State{Suite: st.Suite, Client: st.Client, Socket: st.Socket, TX: next.TX, RX: next.RX, TXGen: st.TXGen, RXGen: st.RXGen}
	defer ns.Zero() // the store keeps copies
	if op != rekey.OpReceived {
		ns.TXGen++
	}
	if op != rekey.OpSend {
		ns.RXGen++
	}
	var id uint32
	var delErr error
	r.onKeyThread(func() {
		if id, err = store.Put(ns); err == nil {
			delErr = store.Delete(r.SessionID)
		}
	})
	if err != nil {
		// Keys changed but not kept: the next update could not be
		// served, so the connection ends now.
		rekey.CloseNotify(sock)
		forget()
		return &updateError{syscall.ECONNABORTED, fmt.Errorf("key update %v: storing the next keys: %w (close_notify sent)", r.KeyUpdate, err)}
	}
	if delErr != nil {
		// It expires on its own (session.Keyring's TTL).
		d.log().Warn("key update: destroying the previous generation's state", "peer", r.peer.String(), "err", delErr)
	}
	res.sessionID = id
	return nil
}

// stepStatus is DONE's status for a failed rekey.Step.
func stepStatus(err error) syscall.Errno {
	var alert *tls13.AlertError
	switch {
	case errors.Is(err, rekey.ErrPeerClosed):
		return syscall.ECONNRESET
	case errors.As(err, &alert) && alert.Received:
		return syscall.EPROTO
	case errors.Is(err, rekey.ErrUnsupported):
		return syscall.EOPNOTSUPP
	case errors.Is(err, os.ErrDeadlineExceeded):
		return syscall.ETIMEDOUT
	}
	return syscall.ECONNABORTED
}
