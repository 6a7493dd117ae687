package handshake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/keyring/nvme"
)

// outcome is what serving one request produced, for DONE and the log.
type outcome struct {
	role       config.Role
	auth       genl.AuthMode
	peer       netip.AddrPort
	peerName   string
	rule       string
	proto      int
	session    *tls13.Session // nil on failure
	remoteAuth []int32
	identity   string // PSK identity or certificate subject, for the log
	err        error
}

// serve runs one accepted request to its DONE: policy, credentials,
// handshake, kTLS. It never returns without DONE and without closing
// req.FD.
func (d *Daemon) serve(ctx context.Context, keys Keyring, req genl.Request, start time.Time) {
	o := &outcome{auth: req.Auth, peerName: req.PeerName}
	defer func() {
		if r := recover(); r != nil {
			o.err = fmt.Errorf("internal error: %v", r)
			d.log().Error("panic while serving a request", "panic", r)
		}
		d.finish(req, o, start)
	}()
	o.err = d.run(ctx, keys, req, o, start)
}

// run does the work of serve and returns why it failed, if it did.
func (d *Daemon) run(ctx context.Context, keys Keyring, req genl.Request, o *outcome, start time.Time) error {
	policy := d.Policy()
	switch req.MessageType {
	case genl.ClientHello:
		o.role = config.Client
	case genl.ServerHello:
		o.role = config.Server
	default:
		return fmt.Errorf("%w: message type %d", errUnsupported, req.MessageType)
	}
	switch req.Auth {
	case genl.PSK, genl.X509, genl.Unauth:
	default:
		return fmt.Errorf("%w: auth mode %d", errUnsupported, req.Auth)
	}
	fd := int(req.FD)
	proto, err := ktls.Protocol(fd)
	if err != nil {
		return fmt.Errorf("reading SO_PROTOCOL: %w", err)
	}
	o.proto = proto
	if proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP {
		return fmt.Errorf("%w: socket protocol %d is neither TCP nor MPTCP", errUnsupported, proto)
	}
	o.peer = peerAddr(fd)
	if err := d.checkMPTCP(fd, proto); err != nil { // before any handshake byte
		return err
	}

	// Link the keyrings first: keys must be possessed to be read.
	attached, detach, err := keys.Attach(policy.Global().Keyrings, req.Keyring)
	if err != nil {
		d.log().Warn("linking keyrings", "err", err)
	}
	if detach != nil {
		defer detach()
	}

	m := config.Match{Role: o.role, PeerName: req.PeerName, Addr: o.peer.Addr()}
	var psks []tls13.PSK
	if o.role == config.Client && req.Auth == genl.PSK {
		// The client knows its identity now; the server only from the
		// ClientHello (see pskServerConfig).
		if psks, err = clientPSKs(keys, req.PeerIdentities); err != nil {
			return err
		}
		defer zeroPSKs(psks)
		fillIdentity(&m, string(psks[0].Identity))
	}
	settings := policy.Resolve(m)
	o.rule = settings.Rule
	if settings.Reject {
		return fmt.Errorf("%w: refused by policy rule %q", errPolicy, settings.Rule)
	}
	if !settings.Auth.Allows(config.AuthMode(req.Auth)) {
		return fmt.Errorf("%w: auth mode %v not allowed by policy rule %q", errPolicy, req.Auth, settings.Rule)
	}

	// The consumer's clock started before we accepted the request.
	ctx, cancel := context.WithDeadline(ctx, start.Add(settings.Deadline(req.Timeout)))
	defer cancel()

	conn, err := socketConn(fd)
	if err != nil {
		return err
	}
	defer conn.Close()

	var session *tls13.Session
	switch req.Auth {
	case genl.PSK:
		session, err = d.pskHandshake(ctx, conn, keys, attached, o, psks, policy, settings)
	case genl.X509, genl.Unauth:
		session, err = d.x509Handshake(ctx, conn, keys, req, o, settings)
	default:
		return fmt.Errorf("%w: auth mode %d", errUnsupported, req.Auth)
	}
	if err != nil {
		return err
	}
	defer session.Zero()
	o.session = session

	tx, rx := kernelKeys(session)
	defer clear(tx.Key)
	defer clear(rx.Key)
	if err := d.Installer.Install(fd, tx, rx, ktls.Options{}); err != nil {
		if errors.Is(err, ktls.ErrULPUnsupported) && proto == unix.IPPROTO_MPTCP {
			return fmt.Errorf("the kernel lacks kTLS on MPTCP sockets: the handshake succeeded but TCP_ULP was refused: %w", err)
		}
		return err
	}
	return nil
}

// kernelKeys turns a session into the keys kTLS takes.
func kernelKeys(s *tls13.Session) (tx, rx ktls.Keys) {
	for _, k := range []struct {
		dst *ktls.Keys
		ts  tls13.TrafficSecret
	}{{&tx, s.TX}, {&rx, s.RX}} {
		key, iv := tls13.TrafficKey(s.Suite, k.ts.Secret)
		*k.dst = ktls.Keys{Suite: uint16(s.Suite), Key: key, IV: iv, Seq: k.ts.Seq}
	}
	return tx, rx
}

// finish sends DONE, closes the fd and logs the request's line.
func (d *Daemon) finish(req genl.Request, o *outcome, start time.Time) {
	status := doneStatus(o.err)
	done := genl.Done{FD: req.FD, Status: status}
	if status == 0 {
		done.RemoteAuth = o.remoteAuth
	}
	// net.FileConn made the socket's file non-blocking; the kernel
	// consumer owns it again from here on.
	unix.SetNonblock(int(req.FD), false)
	doneErr := d.Kernel.Done(done)
	unix.Close(int(req.FD))

	d.mu.Lock()
	if status == 0 {
		d.served++
	} else {
		d.failed++
	}
	d.mu.Unlock()
	d.emit(Event{Role: o.role.String(), Auth: o.auth.String(), Status: status, Duration: time.Since(start)})

	attrs := []slog.Attr{
		slog.String("peer", peerString(o)),
		slog.String("role", o.role.String()),
		slog.String("auth", o.auth.String()),
	}
	if o.identity != "" {
		attrs = append(attrs, slog.String("identity", o.identity))
	}
	if o.rule != "" {
		attrs = append(attrs, slog.String("rule", o.rule))
	}
	if s := o.session; s != nil {
		attrs = append(attrs, slog.String("suite", s.Suite.String()))
		if s.PSKIdentity != nil {
			attrs = append(attrs, slog.String("psk_mode", s.PSKMode.String()))
		}
		attrs = append(attrs, slog.String("group", s.Group.String()))
		if s.DidHelloRetryRequest {
			attrs = append(attrs, slog.Bool("hrr", true))
		}
	}
	if o.proto == unix.IPPROTO_MPTCP {
		attrs = append(attrs, slog.Bool("mptcp", true))
	}
	result := "ok"
	level := slog.LevelInfo
	if status != 0 {
		result, level = "failed", slog.LevelWarn
		attrs = append(attrs, slog.String("error", o.err.Error()))
	}
	attrs = append(attrs,
		slog.String("result", result),
		slog.String("status", statusName(status)),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
	if doneErr != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("done_error", doneErr.Error()))
	}
	d.log().LogAttrs(context.Background(), level, "handshake", attrs...)
}

func peerString(o *outcome) string {
	switch {
	case o.peer.IsValid() && o.peerName != "":
		return o.peerName + " (" + o.peer.String() + ")"
	case o.peer.IsValid():
		return o.peer.String()
	case o.peerName != "":
		return o.peerName
	}
	return "unknown"
}

// fillIdentity puts a PSK identity, and the NQNs of an NVMe one, into a
// policy match.
func fillIdentity(m *config.Match, identity string) {
	m.PSKIdentity = identity
	if id, err := nvme.ParseIdentity(identity); err == nil {
		m.HostNQN, m.SubsysNQN = id.HostNQN, id.SubsysNQN
	}
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

// socketConn gives the handshake a net.Conn over the kernel's socket. It
// works on a duplicate so that closing the net.Conn leaves req.FD, which
// DONE names, open.
func socketConn(fd int) (net.Conn, error) {
	return fileConn(fd)
}
