package handshake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/rekey"
)

// A request is one kernel request on its way from ACCEPT to DONE: what
// the steps have learnt so far. Only the goroutine serving it touches it;
// each step fills the fields named after it, and later steps only read
// them.
type request struct {
	genl.Request
	accepted time.Time // when ACCEPT returned: the consumer's clock started earlier
	keys     keyThread
	// work is the budget of work slots (budget.go): serve holds one
	// from start to DONE except while the engine waits on the peer. nil
	// (requests that never started) means no budget.
	work slots
	// file holds the fd once the handshake has it on the runtime poller
	// (openSocket); closeSocket closes it after DONE.
	file *os.File

	// kind: from the message type.
	kind kind
	// validate: the socket.
	proto int
	peer  netip.AddrPort
	// attachKeyrings: the serials a server may search for a client's
	// identity.
	rings []int32
	// policy is the generation this request runs under, read when it
	// starts (a reload does not change it); resolvePolicy picks the
	// settings that apply.
	policy   *config.Policy
	settings *config.Settings
	// credentials: this side's PSKs (PSK client) or certificate
	// material (x509).
	psks []tls13.PSK
	x509 *x509Credentials

	// cleanup runs, last first, before DONE: it unlinks keyrings and
	// zeroes keys.
	cleanup []func()
}

// A result is what a handshake engine hands back: the session and, for
// the log and DONE, who the peer proved to be. On failure the session is
// nil and the rest says how far it got.
type result struct {
	session    *tls13.Session
	identity   string  // PSK identity or certificate subject
	rule       string  // the policy rule the handshake settled on,
	narrowed   bool    // if it is not r.settings' (a PSK server's per-identity rule)
	remoteAuth []int32 // DONE's REMOTE_AUTH
	// KeyUpdate upcalls (keyupdate.go): DONE's SESSION_ID, and for the
	// log what a KeyUpdate request asked for.
	sessionID uint32
	update    string
}

// A kind is what a message type asks for: its role, and the steps that
// serve it. kindOf is the one place the message type is read; each
// request kind is one case there with a walk of its own (the proposed
// KeyUpdate upcalls, message types 3 and 4: keyupdate.go). A walk stores what its
// engine returned in *res as soon as it has it, so that serve zeroes the
// session even if a later step panics.
type kind struct {
	role config.Role
	walk func(d *Daemon, ctx context.Context, r *request, res *result) error
}

func kindOf(t genl.MessageType) (kind, error) {
	switch t {
	case genl.ClientHello:
		return kind{role: config.Client, walk: (*Daemon).handshake}, nil
	case genl.ServerHello:
		return kind{role: config.Server, walk: (*Daemon).handshake}, nil
	case genl.ClientKeyUpdate:
		return kind{role: config.Client, walk: (*Daemon).keyUpdate}, nil
	case genl.ServerKeyUpdate:
		return kind{role: config.Server, walk: (*Daemon).keyUpdate}, nil
	}
	return kind{}, fmt.Errorf("%w: message type %d", errUnsupported, t)
}

// serve runs one accepted request to its DONE. It never returns without
// DONE and without closing r.FD; a panic in a step is logged with its
// stack and reported as EIO. It takes a work slot first and gives it back
// after DONE; ctx ending (the drain grace over) before a slot is free, or
// during the handshake, ends the request with ETIMEDOUT.
func (d *Daemon) serve(ctx context.Context, r *request) {
	var res result
	var err error
	holding := false
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v", p)
			d.logPanic("serving a request", p)
		}
		if err != nil && context.Cause(ctx) == errDraining && !errors.Is(err, errDraining) {
			err = fmt.Errorf("%w: %w", errDraining, err)
		}
		res.session.Zero() // the kernel has the keys, or will not get them
		r.release()
		d.finish(r, res, err)
		if holding {
			r.work.release()
		}
	}()
	if r.work != nil {
		if err = r.work.acquire(ctx); err != nil {
			return
		}
		holding = true
	}
	if r.policy == nil {
		r.policy = d.Policy()
	}
	if r.kind, err = kindOf(r.MessageType); err != nil {
		return
	}
	err = r.kind.walk(d, ctx, r, &res)
}

// handshake is the walk of a TLS handshake request, one step after the
// other over r. The engine step is the only one that waits on the peer.
func (d *Daemon) handshake(ctx context.Context, r *request, res *result) error {
	if err := r.validate(); err != nil {
		return err
	}
	// Before any handshake byte: an MPTCP socket whose kernel cannot
	// take kTLS on it is refused now, not after the handshake.
	if err := d.checkMPTCP(int(r.FD), r.proto); err != nil {
		return err
	}
	d.attachKeyrings(r)
	if err := d.resolvePolicy(r); err != nil {
		return err
	}
	mode, _ := modeOf(r.Auth) // validate refused any other
	if mode.credentials != nil {
		if err := mode.credentials(d, r); err != nil {
			return err
		}
	}
	// The deadline counts from ACCEPT: the consumer's own timer started
	// before we took the request.
	ctx, cancel := context.WithDeadline(ctx, r.accepted.Add(r.settings.Deadline(r.Timeout)))
	defer cancel()
	conn, err := r.openSocket()
	if err != nil {
		return err
	}
	if r.work != nil {
		// Waiting on the peer holds no work slot, and its first message
		// has first_flight_timeout to arrive.
		first := "ClientHello"
		if r.kind.role == config.Client {
			first = "ServerHello"
		}
		conn = newPeerConn(conn, r.work, first, r.policy.Global().FirstFlightTimeout)
	}
	*res, err = mode.handshake(d, ctx, r, conn)
	if err != nil {
		return err
	}
	if err := d.install(r, res.session); err != nil {
		return err
	}
	d.keepSession(r, res)
	return nil
}

// An authMode is how one of the kernel's auth modes gets its credentials
// and runs its handshake. PSK has no credentials step: a client's keys are
// read while resolving the policy (its identity selects the rule), a
// server's during the handshake (the ClientHello names them).
type authMode struct {
	credentials func(d *Daemon, r *request) error
	handshake   func(d *Daemon, ctx context.Context, r *request, conn net.Conn) (result, error)
}

func modeOf(a genl.AuthMode) (authMode, bool) {
	switch a {
	case genl.PSK:
		return authMode{nil, (*Daemon).pskHandshake}, true
	case genl.X509, genl.Unauth:
		return authMode{(*Daemon).x509Credentials, (*Daemon).x509Handshake}, true
	}
	return authMode{}, false
}

// validate refuses what this daemon cannot serve: an unknown auth mode, a
// socket that is neither TCP nor MPTCP.
func (r *request) validate() error {
	if _, ok := modeOf(r.Auth); !ok {
		return fmt.Errorf("%w: auth mode %d", errUnsupported, r.Auth)
	}
	proto, err := ktls.Protocol(int(r.FD))
	if err != nil {
		return fmt.Errorf("reading SO_PROTOCOL: %w", err)
	}
	r.proto = proto
	if proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP {
		return fmt.Errorf("%w: socket protocol %d is neither TCP nor MPTCP", errUnsupported, proto)
	}
	r.peer = peerAddr(int(r.FD))
	return nil
}

// attachKeyrings links the policy's keyrings, .nvme, .nfs and .nfsd (see
// requestKeyrings) and the request's own into the key thread's: keys must
// be possessed to be read. A keyring that fails to link is logged; the
// credentials step reports what is missing.
func (d *Daemon) attachKeyrings(r *request) {
	attached, detach, err := r.keys.Attach(requestKeyrings(r.policy.Global().Keyrings), r.Keyring)
	if err != nil {
		d.log().Warn("linking keyrings", "err", err)
	}
	if detach != nil {
		r.cleanup = append(r.cleanup, detach)
	}
	r.rings = attached
}

// resolvePolicy picks the settings for the request, once, from what is
// known before the handshake; a PSK client's identity is known already
// (the first one the kernel named). A PSK server learns the client's
// identity only from the ClientHello: its lookup narrows these settings
// to that identity's rule, resolving again only if the policy has rules
// that test an identity.
func (d *Daemon) resolvePolicy(r *request) error {
	m := config.Match{Role: r.kind.role, PeerName: r.PeerName, Addr: r.peer.Addr()}
	if r.kind.role == config.Client && r.Auth == genl.PSK {
		psks, err := clientPSKs(r.keys, r.PeerIdentities)
		if err != nil {
			return err
		}
		r.psks = psks
		r.cleanup = append(r.cleanup, func() { zeroPSKs(psks) })
		fillIdentity(&m, string(psks[0].Identity))
	}
	r.settings = r.policy.Resolve(m)
	if r.settings.Reject {
		return fmt.Errorf("%w: refused by policy rule %q", errPolicy, r.settings.Rule)
	}
	if !r.settings.Auth.Allows(r.Auth) {
		return fmt.Errorf("%w: auth mode %v not allowed by policy rule %q", errPolicy, r.Auth, r.settings.Rule)
	}
	return nil
}

// install hands the session's traffic keys to kTLS.
func (d *Daemon) install(r *request, s *tls13.Session) error {
	tx, rx := rekey.SessionKeys(s)
	defer tx.Zero()
	defer rx.Zero()
	// An MPTCP socket got here only if checkMPTCP saw it take the ULP.
	return explainInstall(d.Installer.Install(int(r.FD), tx, rx, installOptions(s)), s) // rsl.go
}

// release undoes what the steps set up (keyring links, keys in memory),
// last first.
func (r *request) release() {
	for i := len(r.cleanup) - 1; i >= 0; i-- {
		r.cleanup[i]()
	}
	r.cleanup = nil
}

// finish sends DONE, closes the fd, emits the Event and logs the
// request's line. err is why the request failed, nil if it did not. A
// panic in it (an Events callback, the logger, the Kernel) is logged; if
// DONE was not sent yet it is sent then, with EIO, and the fd closed.
func (d *Daemon) finish(r *request, res result, err error) {
	sent := false
	defer func() {
		if p := recover(); p != nil {
			d.logPanic("finishing a request", p)
			if !sent {
				func() {
					defer func() { recover() }() // a Kernel that panics again
					d.Kernel.Done(genl.Done{FD: r.FD, Status: syscall.EIO})
				}()
				r.closeSocket()
			}
		}
	}()
	status := doneStatus(err)
	done := genl.Done{FD: r.FD, Status: status}
	if status == 0 {
		// Only a success names the peer's credentials.
		done.RemoteAuth = res.remoteAuth
		done.SessionID = res.sessionID
	}
	// openSocket made the socket's file non-blocking; the kernel
	// consumer owns it again from here on.
	unix.SetNonblock(int(r.FD), false)
	doneErr := d.Kernel.Done(done)
	r.closeSocket()
	sent = true

	d.mu.Lock()
	if status == 0 {
		d.served++
	} else {
		d.failed++
	}
	d.mu.Unlock()
	d.emit(Event{Role: roleName(r.kind.role), Auth: r.Auth.String(), Status: status, Duration: time.Since(r.accepted)})

	attrs := []slog.Attr{
		slog.String("peer", peerString(r)),
		slog.String("role", roleName(r.kind.role)),
		slog.String("auth", r.Auth.String()),
	}
	if res.update != "" {
		attrs = append(attrs, slog.String("key_update", res.update))
	}
	if res.identity != "" {
		attrs = append(attrs, slog.String("identity", res.identity))
	}
	var rule string
	switch {
	case res.narrowed:
		rule = res.rule
	case r.settings != nil:
		rule = r.settings.Rule
	}
	if rule != "" {
		attrs = append(attrs, slog.String("rule", rule))
	}
	if s := res.session; s != nil {
		attrs = append(attrs, slog.String("suite", s.Suite.String()))
		if s.PSKIdentity != nil {
			attrs = append(attrs, slog.String("psk_mode", s.PSKMode.String()))
		}
		attrs = append(attrs, slog.String("group", s.Group.String()))
		if s.DidHelloRetryRequest {
			attrs = append(attrs, slog.Bool("hrr", true))
		}
	}
	attrs = append(attrs, d.wireAttrs(res)...) // wire.go
	if r.proto == unix.IPPROTO_MPTCP {
		attrs = append(attrs, slog.Bool("mptcp", true))
	}
	result := "ok"
	level := slog.LevelInfo
	if status != 0 {
		result, level = "failed", slog.LevelWarn
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	attrs = append(attrs,
		slog.String("result", result),
		slog.String("status", statusName(status)),
		slog.Float64("duration_ms", float64(time.Since(r.accepted).Microseconds())/1000))
	if doneErr != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("done_error", doneErr.Error()))
	}
	d.log().LogAttrs(context.Background(), level, "handshake", attrs...)
}

// roleName names a role for the log and Events: "unknown" before the
// message type was read, or when it named no role.
func roleName(r config.Role) string {
	if r == 0 {
		return "unknown"
	}
	return r.String()
}

func peerString(r *request) string {
	switch {
	case r.peer.IsValid() && r.PeerName != "":
		return r.PeerName + " (" + r.peer.String() + ")"
	case r.peer.IsValid():
		return r.peer.String()
	case r.PeerName != "":
		return r.PeerName
	}
	return "unknown"
}

// statusName names a DONE status for the log.
func statusName(e syscall.Errno) string {
	if e == 0 {
		return "0"
	}
	if name := unix.ErrnoName(e); name != "" {
		return name
	}
	return fmt.Sprint(int(e))
}
