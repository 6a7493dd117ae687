// Package fakekernel plays the kernel's side of the "handshake" generic
// netlink family for tests that have no net/handshake: it serves the family
// over genltest, queues requests like net/handshake/request.c, hands over
// file descriptors at ACCEPT like net/handshake/netlink.c, and checks DONE
// the way the kernel does, including the failures that leave a consumer
// waiting for its timeout.
//
// A test submits a connected socket with Submit, runs the daemon against
// connections from Dial, and waits on the returned Pending for the DONE
// result. OpenFDs proves the daemon closed every fd it was handed.
//
// What it does not fake: multicast (genltest cannot join groups; use Ready
// instead of a genl.Listener), keyrings, permissions, and network
// namespaces.
package fakekernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
)

// Numbers from include/uapi/linux/handshake.h, kept apart from package
// genl's so that the fake checks genl instead of sharing its mistakes.
const (
	cmdAccept = 2
	cmdDone   = 3

	acceptSockFD       = 1
	acceptHandlerClass = 2
	acceptMessageType  = 3
	acceptTimeout      = 4
	acceptAuthMode     = 5
	acceptPeerIdentity = 6
	acceptCertificate  = 7
	acceptPeername     = 8
	acceptKeyring      = 9

	x509Cert    = 1
	x509Privkey = 2

	doneStatus     = 1
	doneSockFD     = 2
	doneRemoteAuth = 3

	maxErrno = 4095
)

// The session-tags proposal (Chuck Lever, "net/handshake: session tags",
// 9 patches, 2026-06-05; not merged) reuses numbers of the KeyUpdate
// proposal, whose numbers live in package genl (keyupdate.go): DONE
// attribute 4 is TAG (a string, multi, up to 255 bytes), ACCEPT attribute
// 10 is MAX_TAGS (u32, at most 64). Package genl never sends them, so
// they are here only.
const (
	tagsDoneTag        = 4
	tagsAcceptMaxTags  = 10
	tagsMaxTags        = 64
	tagsMaxTagLength   = 255
	keyUpdateDoneAttr  = genl.KeyUpdateDoneSessionIDAttr
	keyUpdateReqAttr   = genl.KeyUpdateAcceptRequestAttr
	keyUpdateSessAttr  = genl.KeyUpdateAcceptSessionIDAttr
	attr4PolicyDefault = unix.NL_ATTR_TYPE_BINARY
)

// Config describes the kernel to mimic.
type Config struct {
	FamilyID uint16 // dynamic in a real kernel
	GroupID  uint32 // ID of the "tlshd" group; "none" gets GroupID-1

	// AcceptPolicy and DonePolicy list the attributes each operation's
	// request policy accepts, as GETPOLICY reports them; any other
	// attribute in a request fails with EINVAL.
	AcceptPolicy []uint16
	DonePolicy   []uint16

	// Keyring makes ACCEPT replies carry KEYRING when Params.Keyring is
	// set, as kernels from 6.17 on do.
	Keyring bool

	// NoGetPolicy makes GETPOLICY fail with EOPNOTSUPP.
	NoGetPolicy bool

	// KeyUpdate makes the kernel speak the KeyUpdate upcall proposal v7
	// (see package genl's keyupdate.go): every ACCEPT reply carries
	// KEY_UPDATE_REQUEST and SESSION_ID, SubmitKeyUpdate works, and DONE
	// attribute 4, if DonePolicy lists it, is SESSION_ID (u32 in
	// GETPOLICY), which Result.SessionID records.
	KeyUpdate bool

	// Tags makes the kernel speak the session-tags proposal instead:
	// ACCEPT replies carry MAX_TAGS (attribute 10) = 64, and DONE
	// attribute 4, if DonePolicy lists it, is TAG (a string in
	// GETPOLICY), which Result.Tags records. With neither KeyUpdate nor
	// Tags, GETPOLICY reports a listed attribute 4 as binary.
	Tags bool
}

// Linux612 mimics Debian's 6.12 kernels. ACCEPT's request policy holds
// only HANDLER_CLASS: the policy covers what the agent sends, and the
// reply attributes (SOCKFD through PEERNAME) are not in it.
func Linux612() Config {
	return Config{
		FamilyID:     0x1c,
		GroupID:      11,
		AcceptPolicy: []uint16{acceptHandlerClass},
		DonePolicy:   []uint16{doneStatus, doneSockFD, doneRemoteAuth},
	}
}

// Mainline mimics a current mainline kernel: like 6.12, but ACCEPT
// replies carry the consumer's KEYRING.
func Mainline() Config {
	c := Linux612()
	c.Keyring = true
	return c
}

// KeyUpdateV7 mimics a mainline kernel with the KeyUpdate upcall
// proposal v7 applied: message types 3 and 4, ACCEPT attributes 10 and 11
// in every reply, DONE attribute 4 SESSION_ID as u32.
func KeyUpdateV7() Config {
	c := Mainline()
	c.KeyUpdate = true
	c.DonePolicy = []uint16{doneStatus, doneSockFD, doneRemoteAuth, keyUpdateDoneAttr}
	return c
}

// SessionTags mimics a mainline kernel with the session-tags proposal
// applied: DONE attribute 4 is TAG, a string; ACCEPT replies carry
// MAX_TAGS as attribute 10.
func SessionTags() Config {
	c := Mainline()
	c.Tags = true
	c.DonePolicy = []uint16{doneStatus, doneSockFD, doneRemoteAuth, tagsDoneTag}
	return c
}

// Params are what a consumer passes with its request (struct
// tls_handshake_args).
type Params struct {
	MessageType    genl.MessageType
	Auth           genl.AuthMode
	PeerIdentities []int32
	Certificates   []genl.CertPair
	PeerName       string
	Timeout        time.Duration // 0: no TIMEOUT attribute
	Keyring        int32         // sent only with Config.Keyring

	// KeyUpdate and SessionID are sent only with Config.KeyUpdate, in
	// every reply (0 on a first handshake); SubmitKeyUpdate sets them.
	KeyUpdate genl.KeyUpdateType
	SessionID uint32
}

// Result is what DONE reported.
type Result struct {
	Status     syscall.Errno
	RemoteAuth []int32

	// SessionID is DONE's SESSION_ID on a Config.KeyUpdate kernel; 0
	// if absent.
	SessionID uint32

	// Tags are DONE's TAG attributes on a Config.Tags kernel.
	Tags []string
}

// A Pending is one submitted request.
type Pending struct {
	k      *Kernel
	fd     int // the submitter's fd
	params Params
	done   chan Result // receives once, buffered

	// Set at ACCEPT, under k.mu.
	accepted bool
	newFD    int
	sock     fileID
}

// Done returns a channel that receives the DONE result once. Done and
// Wait share that one result: use one of them.
func (p *Pending) Done() <-chan Result { return p.done }

// Wait waits up to timeout for DONE, as a consumer's timer would.
func (p *Pending) Wait(timeout time.Duration) (Result, error) {
	select {
	case r := <-p.done:
		return r, nil
	case <-time.After(timeout):
		return Result{}, fmt.Errorf("fakekernel: no DONE for fd %d within %v", p.fd, timeout)
	}
}

// FD returns the fd ACCEPT handed out for this request, or -1 before
// ACCEPT.
func (p *Pending) FD() int {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	if !p.accepted {
		return -1
	}
	return p.newFD
}

// fileID identifies an open file independently of fd numbers, as the
// kernel identifies the socket behind a DONE's SOCKFD.
type fileID struct{ dev, ino uint64 }

type handout struct {
	fd int
	id fileID
}

// A Kernel is a fake handshake family. It is safe for concurrent use.
type Kernel struct {
	cfg   Config
	ready chan struct{}

	mu       sync.Mutex
	queue    []*Pending          // submitted, not yet accepted: FIFO
	accepted map[fileID]*Pending // accepted, waiting for DONE
	handed   []handout           // every fd handed out
}

// New returns a Kernel mimicking cfg. Zero fields take Linux612's
// values, so New(Config{}) is a 6.12 kernel.
func New(cfg Config) *Kernel {
	def := Linux612()
	if cfg.FamilyID == 0 {
		cfg.FamilyID = def.FamilyID
	}
	if cfg.GroupID == 0 {
		cfg.GroupID = def.GroupID
	}
	if cfg.AcceptPolicy == nil {
		cfg.AcceptPolicy = def.AcceptPolicy
	}
	if cfg.DonePolicy == nil {
		cfg.DonePolicy = def.DonePolicy
	}
	return &Kernel{
		cfg:      cfg,
		ready:    make(chan struct{}, 1),
		accepted: make(map[fileID]*Pending),
	}
}

// Family returns the family as GETFAMILY describes it.
func (k *Kernel) Family() genetlink.Family {
	return genetlink.Family{
		ID:      k.cfg.FamilyID,
		Name:    "handshake",
		Version: 1,
		Groups: []genetlink.MulticastGroup{
			{Name: "none", ID: k.cfg.GroupID - 1},
			{Name: "tlshd", ID: k.cfg.GroupID},
		},
	}
}

// Dial returns a new connection to the fake, for genl.NewConn. Each call
// gives an independent socket, as genetlink.Dial does.
func (k *Kernel) Dial() *genetlink.Conn {
	return genltest.Dial(genltest.ServeFamily(k.Family(), k.serve))
}

// Ready returns a channel that receives after a Submit. Like the READY
// multicast, notifications coalesce: one receive may stand for several
// requests, so the receiver sweeps with ACCEPT until EAGAIN.
func (k *Kernel) Ready() <-chan struct{} { return k.ready }

// Submit queues a handshake request for the connected socket fd, as a
// consumer's tls_client_hello_*() or tls_server_hello_*() would. The fd
// stays the caller's: the kernel duplicates it into the ACCEPT caller
// when the request is accepted, not now, so the caller keeps it open until
// the request completes.
func (k *Kernel) Submit(fd int, p Params) *Pending {
	pd := &Pending{k: k, fd: fd, params: p, done: make(chan Result, 1), newFD: -1}
	k.mu.Lock()
	k.queue = append(k.queue, pd)
	k.mu.Unlock()
	select {
	case k.ready <- struct{}{}:
	default:
	}
	return pd
}

// SubmitKeyUpdate queues a KeyUpdate request (proposal v7) for the
// connected socket fd, as tls_client_keyupdate_psk() or
// tls_server_keyupdate_psk() would: side is genl.ClientKeyUpdate or
// genl.ServerKeyUpdate (the role of this end in its first handshake), typ
// what to do, and sessionID the SESSION_ID the daemon returned in that
// socket's last DONE. p gives the rest (Auth, PeerIdentities, Timeout);
// its MessageType, KeyUpdate and SessionID are overwritten. It fails on a
// kernel without Config.KeyUpdate, which has no such request.
func (k *Kernel) SubmitKeyUpdate(fd int, side genl.MessageType, typ genl.KeyUpdateType, sessionID uint32, p Params) (*Pending, error) {
	if !k.cfg.KeyUpdate {
		return nil, errors.New("fakekernel: this kernel has no KeyUpdate upcall (Config.KeyUpdate)")
	}
	if side != genl.ClientKeyUpdate && side != genl.ServerKeyUpdate {
		return nil, fmt.Errorf("fakekernel: KeyUpdate message type %v, want ClientKeyUpdate or ServerKeyUpdate", side)
	}
	p.MessageType, p.KeyUpdate, p.SessionID = side, typ, sessionID
	return k.Submit(fd, p), nil
}

// Queued returns the number of requests not yet accepted.
func (k *Kernel) Queued() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.queue)
}

// OpenFDs returns how many fds handed out at ACCEPT are still open in
// this process (and still refer to the socket handed out), so a test can
// prove the daemon closed every one.
func (k *Kernel) OpenFDs() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, h := range k.handed {
		if id, err := identify(h.fd); err == nil && id == h.id {
			n++
		}
	}
	return n
}

func identify(fd int) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// errno returns err as a netlink error message. GETPOLICY errors are
// returned raw instead (see getPolicy).
func errno(e syscall.Errno) error { return genltest.Error(int(e)) }

func (k *Kernel) serve(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
	switch {
	case len(nreq.Data) == 0:
		// A Receive with nothing sent: no multicast here.
		return nil, io.EOF
	case nreq.Header.Type == unix.GENL_ID_CTRL && greq.Header.Command == unix.CTRL_CMD_GETPOLICY:
		return k.getPolicy(greq)
	case nreq.Header.Type == netlink.HeaderType(k.cfg.FamilyID):
		switch greq.Header.Command {
		case cmdAccept:
			if nreq.Header.Flags&netlink.Acknowledge != 0 {
				return nil, errors.New("fakekernel: ACCEPT with NLM_F_ACK: a real kernel queues an ACK after the reply, which breaks the next request on the socket")
			}
			return k.accept(greq)
		case cmdDone:
			if nreq.Header.Flags&netlink.Acknowledge == 0 {
				return nil, errors.New("fakekernel: DONE without NLM_F_ACK: a real kernel sends no reply, so waiting for one blocks forever")
			}
			return k.done(greq)
		}
		return nil, errno(unix.EOPNOTSUPP)
	}
	return nil, errno(unix.ENOENT)
}

// attrs decodes a request's top-level attributes, failing with EINVAL
// like a strict policy on any attribute outside allowed or not 4 bytes;
// attribute str, if not 0, is a NUL-terminated string of at most
// tagsMaxTagLength bytes instead.
func attrs(b []byte, allowed []uint16, str uint16) (map[uint16][][]byte, error) {
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return nil, errno(unix.EINVAL)
	}
	m := make(map[uint16][][]byte)
	for _, a := range as {
		t := a.Type &^ (netlink.Nested | netlink.NetByteOrder)
		switch {
		case !slices.Contains(allowed, t):
			return nil, errno(unix.EINVAL)
		case t == str && str != 0:
			if len(a.Data) == 0 || len(a.Data) > tagsMaxTagLength+1 || a.Data[len(a.Data)-1] != 0 {
				return nil, errno(unix.EINVAL)
			}
		case len(a.Data) != 4:
			return nil, errno(unix.EINVAL)
		}
		m[t] = append(m[t], a.Data)
	}
	return m, nil
}

func u32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

func (k *Kernel) accept(greq genetlink.Message) ([]genetlink.Message, error) {
	as, err := attrs(greq.Data, k.cfg.AcceptPolicy, 0)
	if err != nil {
		return nil, err
	}
	class := as[acceptHandlerClass]
	if len(class) == 0 {
		return nil, errno(unix.EINVAL)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if u32(class[len(class)-1]) != 1 || len(k.queue) == 0 {
		return nil, errno(unix.EAGAIN)
	}
	p := k.queue[0]
	k.queue = k.queue[1:]

	// handshake_dup(): a new O_CLOEXEC fd for the socket, in this
	// process, before the caller reads the reply.
	newFD, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		// The kernel completes the request with EIO when it cannot
		// install the fd.
		p.done <- Result{Status: unix.EIO}
		e := unix.EBADF
		errors.As(err, &e)
		return nil, errno(e)
	}
	id, err := identify(newFD)
	if err != nil {
		unix.Close(newFD)
		p.done <- Result{Status: unix.EIO}
		return nil, errno(unix.EIO)
	}
	p.accepted, p.newFD, p.sock = true, newFD, id
	k.accepted[id] = p
	k.handed = append(k.handed, handout{fd: newFD, id: id})

	b, err := k.acceptReply(p)
	if err != nil {
		return nil, err
	}
	return []genetlink.Message{{
		Header: genetlink.Header{Command: cmdAccept, Version: 1},
		Data:   b,
	}}, nil
}

// acceptReply encodes the reply in the order tls_handshake_accept
// (net/handshake/tlshd.c) uses.
func (k *Kernel) acceptReply(p *Pending) ([]byte, error) {
	pp := p.params
	ae := netlink.NewAttributeEncoder()
	ae.Int32(acceptSockFD, int32(p.newFD))
	ae.Uint32(acceptMessageType, uint32(pp.MessageType))
	if pp.Timeout != 0 {
		ae.Uint32(acceptTimeout, uint32(pp.Timeout.Milliseconds()))
	}
	ae.Uint32(acceptAuthMode, uint32(pp.Auth))
	if pp.PeerName != "" {
		ae.String(acceptPeername, pp.PeerName)
	}
	if k.cfg.Keyring && pp.Keyring != 0 {
		ae.Int32(acceptKeyring, pp.Keyring)
	}
	switch {
	case k.cfg.KeyUpdate:
		ae.Uint32(keyUpdateReqAttr, uint32(pp.KeyUpdate))
		ae.Uint32(keyUpdateSessAttr, pp.SessionID)
	case k.cfg.Tags:
		ae.Uint32(tagsAcceptMaxTags, tagsMaxTags)
	}
	switch pp.Auth {
	case genl.PSK:
		for _, id := range pp.PeerIdentities {
			ae.Int32(acceptPeerIdentity, id)
		}
	case genl.X509:
		for _, c := range pp.Certificates {
			if c.Cert == 0 && c.PrivKey == 0 {
				continue
			}
			ae.Nested(acceptCertificate, func(nae *netlink.AttributeEncoder) error {
				nae.Int32(x509Cert, c.Cert)
				nae.Int32(x509Privkey, c.PrivKey)
				return nil
			})
		}
	}
	return ae.Encode()
}

// done checks a DONE as handshake_nl_done_doit (net/handshake/netlink.c)
// does. On EBADF and EBUSY the request stays as it was, so its consumer
// would time out.
func (k *Kernel) done(greq genetlink.Message) ([]genetlink.Message, error) {
	var str uint16
	if k.cfg.Tags {
		str = tagsDoneTag
	}
	as, err := attrs(greq.Data, k.cfg.DonePolicy, str)
	if err != nil {
		return nil, err
	}
	fds := as[doneSockFD]
	if len(fds) == 0 {
		return nil, errno(unix.EINVAL)
	}
	fd := int(int32(u32(fds[len(fds)-1])))
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil, errno(unix.EBADF)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, errno(unix.EBADF) // sockfd_lookup() fails
	}
	id := fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}

	status := syscall.Errno(unix.EIO) // STATUS absent
	if s := as[doneStatus]; len(s) > 0 {
		v := u32(s[len(s)-1])
		if v > maxErrno {
			return nil, errno(unix.EINVAL)
		}
		status = syscall.Errno(v)
	}
	res := Result{Status: status}
	for _, r := range as[doneRemoteAuth] {
		res.RemoteAuth = append(res.RemoteAuth, int32(u32(r)))
	}
	for _, v := range as[keyUpdateDoneAttr] {
		switch {
		case k.cfg.KeyUpdate:
			res.SessionID = u32(v)
		case k.cfg.Tags:
			res.Tags = append(res.Tags, strings.TrimSuffix(string(v), "\x00"))
		}
	}

	k.mu.Lock()
	p, ok := k.accepted[id]
	if ok {
		delete(k.accepted, id)
	}
	k.mu.Unlock()
	if !ok {
		return nil, errno(unix.EBUSY)
	}
	p.done <- res
	return nil, errno(0) // the ACK
}

// getPolicy answers CTRL_CMD_GETPOLICY for one operation as
// ctrl_dumppolicy does: a message mapping the operation to policy index 0,
// then a message per accepted attribute. Errors are returned raw rather
// than as genltest.Error, because nltest copies the request's flags into
// an error message and NLM_F_DUMP's NLM_F_MATCH bit reads as
// NLM_F_ACK_TLVS.
func (k *Kernel) getPolicy(greq genetlink.Message) ([]genetlink.Message, error) {
	if k.cfg.NoGetPolicy {
		return nil, unix.EOPNOTSUPP
	}
	var (
		fam  uint16
		op   uint32
		both bool
	)
	ad, err := netlink.NewAttributeDecoder(greq.Data)
	if err != nil {
		return nil, unix.EINVAL
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.CTRL_ATTR_FAMILY_ID:
			fam = ad.Uint16()
		case unix.CTRL_ATTR_OP:
			op, both = ad.Uint32(), true
		}
	}
	if ad.Err() != nil {
		return nil, unix.EINVAL
	}
	if fam != k.cfg.FamilyID {
		return nil, unix.ENOENT
	}
	var policy []uint16
	switch {
	case !both:
		return nil, unix.EOPNOTSUPP // whole-family dumps are not faked
	case op == cmdAccept:
		policy = k.cfg.AcceptPolicy
	case op == cmdDone:
		policy = k.cfg.DonePolicy
	default:
		return nil, unix.EOPNOTSUPP
	}

	msg := func(fn func(ae *netlink.AttributeEncoder)) (genetlink.Message, error) {
		ae := netlink.NewAttributeEncoder()
		ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, fam)
		fn(ae)
		b, err := ae.Encode()
		return genetlink.Message{
			Header: genetlink.Header{Command: unix.CTRL_CMD_GETPOLICY, Version: 2},
			Data:   b,
		}, err
	}
	nest := func(typ uint16, fn func(ae *netlink.AttributeEncoder)) func(*netlink.AttributeEncoder) error {
		return func(ae *netlink.AttributeEncoder) error {
			ae.Nested(typ, func(ae *netlink.AttributeEncoder) error { fn(ae); return nil })
			return nil
		}
	}
	m, err := msg(func(ae *netlink.AttributeEncoder) {
		nest(unix.CTRL_ATTR_OP_POLICY, func(ae *netlink.AttributeEncoder) {
			nest(uint16(op), func(ae *netlink.AttributeEncoder) {
				ae.Uint32(unix.CTRL_ATTR_POLICY_DO, 0)
			})(ae)
		})(ae)
	})
	if err != nil {
		return nil, err
	}
	msgs := []genetlink.Message{m}
	for _, a := range policy {
		typ := uint32(unix.NL_ATTR_TYPE_U32)
		switch {
		case op == cmdDone && a == doneSockFD:
			typ = unix.NL_ATTR_TYPE_S32
		case op == cmdDone && a == keyUpdateDoneAttr && k.cfg.KeyUpdate:
			typ = unix.NL_ATTR_TYPE_U32
		case op == cmdDone && a == tagsDoneTag && k.cfg.Tags:
			typ = unix.NL_ATTR_TYPE_NUL_STRING
		case op == cmdDone && a == 4:
			typ = attr4PolicyDefault
		}
		m, err := msg(func(ae *netlink.AttributeEncoder) {
			nest(unix.CTRL_ATTR_POLICY, func(ae *netlink.AttributeEncoder) {
				nest(0, func(ae *netlink.AttributeEncoder) {
					nest(a, func(ae *netlink.AttributeEncoder) {
						ae.Uint32(unix.NL_POLICY_TYPE_ATTR_TYPE, typ)
					})(ae)
				})(ae)
			})(ae)
		})
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
