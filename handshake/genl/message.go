package genl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
)

// Family, group and command numbers (include/uapi/linux/handshake.h).
const (
	familyName    = "handshake"
	familyVersion = 1
	groupName     = "tlshd"

	cmdReady  = 1 // HANDSHAKE_CMD_READY
	cmdAccept = 2 // HANDSHAKE_CMD_ACCEPT
	cmdDone   = 3 // HANDSHAKE_CMD_DONE

	handlerClassTLSHD = 1 // HANDSHAKE_HANDLER_CLASS_TLSHD
)

// ACCEPT attributes (HANDSHAKE_A_ACCEPT_*). The request carries only
// HANDLER_CLASS; the reply carries the rest.
const (
	acceptSockFD       = 1
	acceptHandlerClass = 2
	acceptMessageType  = 3
	acceptTimeout      = 4 // u32, milliseconds
	acceptAuthMode     = 5
	acceptPeerIdentity = 6 // multi
	acceptCertificate  = 7 // nest, multi
	acceptPeername     = 8 // NUL-terminated string
	acceptKeyring      = 9 // not in 6.12
)

// CERTIFICATE nest attributes (HANDSHAKE_A_X509_*).
const (
	x509Cert    = 1
	x509Privkey = 2
)

// DONE attributes (HANDSHAKE_A_DONE_*).
const (
	doneStatus     = 1
	doneSockFD     = 2
	doneRemoteAuth = 3 // multi
)

// maxErrno is the largest STATUS the kernel's DONE policy accepts
// (MAX_ERRNO).
const maxErrno = 4095

// A MessageType says which side of the handshake the kernel asks for.
type MessageType uint32

// Message types (HANDSHAKE_MSG_TYPE_*).
const (
	ClientHello MessageType = 1 // be the TLS client
	ServerHello MessageType = 2 // be the TLS server
)

func (t MessageType) String() string {
	switch t {
	case ClientHello:
		return "ClientHello"
	case ServerHello:
		return "ServerHello"
	case ClientKeyUpdate:
		return "ClientKeyUpdate"
	case ServerKeyUpdate:
		return "ServerKeyUpdate"
	}
	return "MessageType(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// An AuthMode says how the peer is to be authenticated.
type AuthMode uint32

// Authentication modes (HANDSHAKE_AUTH_*).
const (
	Unauth AuthMode = 1 // verify the server (client side) but present nothing
	PSK    AuthMode = 2 // external pre-shared keys from PeerIdentities
	X509   AuthMode = 3 // certificates from Certificates
)

func (m AuthMode) String() string {
	switch m {
	case Unauth:
		return "unauth"
	case PSK:
		return "psk"
	case X509:
		return "x509"
	}
	return "AuthMode(" + strconv.FormatUint(uint64(m), 10) + ")"
}

// A CertPair names a certificate and its private key by key serial. Either
// may be 0 when the consumer configured none.
type CertPair struct {
	Cert, PrivKey int32
}

// A Request is a decoded ACCEPT reply: one pending handshake, now owned by
// the caller.
type Request struct {
	// FD is the handshake socket, installed in this process (O_CLOEXEC)
	// by the kernel. -1 if the reply carried no usable SOCKFD.
	FD int32

	// HandlerClass is 0 unless the reply echoed it; the kernel sends it
	// only in READY.
	HandlerClass uint32

	MessageType MessageType

	// Timeout is the consumer's handshake timeout; 0 if it sent none
	// (the NFS consumers send none but still time out on their own).
	Timeout time.Duration

	Auth AuthMode

	// PeerIdentities are key serials, in the kernel's order: the PSKs a
	// client offers (up to 5), or, for a server, a single 0.
	PeerIdentities []int32

	// Certificates are the X.509 certificate and key serials, in order.
	Certificates []CertPair

	// PeerName is the name the consumer expects the server to have
	// (NFS client), or "".
	PeerName string

	// Keyring is the consumer's keyring serial; 0 if absent (always
	// absent before Linux 6.17).
	Keyring int32

	// KeyUpdate and SessionID come from a kernel with the KeyUpdate
	// upcall (proposal v7, see keyupdate.go), which sends both in every
	// ACCEPT: what a KeyUpdate request asks for, and the id this daemon
	// returned in the DONE of the socket's previous handshake. Both are
	// 0 on a first handshake, and always 0 unless
	// Capabilities.SessionID (otherwise ACCEPT attributes 10 and 11 are
	// not the proposal's and land in Unknown).
	KeyUpdate KeyUpdateType
	SessionID uint32

	// Unknown lists attribute types the reply carried that this package
	// does not know, in order; the decoder skips them rather than fail,
	// because newer kernels add attributes.
	Unknown []uint16
}

// Done is the result of one handshake, reported to the kernel with DONE.
type Done struct {
	// FD is Request.FD. It must still be open: the kernel resolves it in
	// this process's file table.
	FD int32

	// Status is 0 for success (kTLS installed) or a positive errno.
	Status syscall.Errno

	// RemoteAuth are the serials of the keys that authenticated the
	// peer. The NVMe consumers require the PSK's serial; NFSD treats any
	// non-zero serial as mutual authentication.
	RemoteAuth []int32

	// SessionID, if not 0, is the id under which the daemon keeps this
	// session's state, for later KeyUpdate requests (proposal v7). It is
	// sent only where Capabilities.SessionID; elsewhere Conn.Done leaves
	// it out (and counts that in Stats.SessionIDOmitted), as DONE
	// attribute 4 is then unknown or another proposal's TAG.
	SessionID uint32
}

// decodeAccept parses an ACCEPT reply's attributes by type, never by
// position, skipping (and recording) types it does not know. keyUpdate
// says the kernel speaks the KeyUpdate proposal, whose ACCEPT attributes
// are decoded only then.
//
// The kernel installs the socket in this process before the reply is even
// read, so a reply that fails to decode may still have handed us an fd.
// When decoding fails after a SOCKFD was found, the returned Request
// carries that FD along with the error, so the caller can send DONE for it
// and close it; otherwise FD is -1. Errors wrap ErrBadReply, and
// ErrNoSockFD when the reply has no SOCKFD.
func decodeAccept(b []byte, keyUpdate bool) (Request, error) {
	r := Request{FD: -1}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		r.FD = scanSockFD(b)
		return r, fmt.Errorf("%w: genl: decoding ACCEPT reply: %w", ErrBadReply, err)
	}
	for ad.Next() {
		switch t := ad.Type(); t {
		case acceptSockFD:
			if v := ad.Int32(); ad.Err() == nil {
				r.FD = v
			}
		case acceptHandlerClass:
			r.HandlerClass = ad.Uint32()
		case acceptMessageType:
			r.MessageType = MessageType(ad.Uint32())
		case acceptTimeout:
			r.Timeout = time.Duration(ad.Uint32()) * time.Millisecond
		case acceptAuthMode:
			r.Auth = AuthMode(ad.Uint32())
		case acceptPeerIdentity:
			if v := ad.Int32(); ad.Err() == nil {
				r.PeerIdentities = append(r.PeerIdentities, v)
			}
		case acceptCertificate:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				var p CertPair
				for nad.Next() {
					switch nad.Type() {
					case x509Cert:
						p.Cert = nad.Int32()
					case x509Privkey:
						p.PrivKey = nad.Int32()
					}
				}
				if nad.Err() == nil {
					r.Certificates = append(r.Certificates, p)
				}
				return nil
			})
		case acceptPeername:
			// NLA_NUL_STRING: the name ends at the first NUL.
			r.PeerName, _, _ = strings.Cut(string(ad.Bytes()), "\x00")
		case acceptKeyring:
			r.Keyring = ad.Int32()
		case KeyUpdateAcceptRequestAttr:
			if !keyUpdate {
				r.Unknown = append(r.Unknown, t)
				break
			}
			r.KeyUpdate = KeyUpdateType(ad.Uint32())
		case KeyUpdateAcceptSessionIDAttr:
			if !keyUpdate {
				r.Unknown = append(r.Unknown, t)
				break
			}
			r.SessionID = ad.Uint32()
		default:
			r.Unknown = append(r.Unknown, t)
		}
	}
	if err := ad.Err(); err != nil {
		if r.FD < 0 {
			r.FD = scanSockFD(b)
		}
		return r, fmt.Errorf("%w: genl: decoding ACCEPT reply: %w", ErrBadReply, err)
	}
	if r.FD < 0 {
		return r, ErrNoSockFD
	}
	return r, nil
}

// scanSockFD finds a well-formed SOCKFD in a reply whose decoding failed
// before reaching it, or that arrived truncated, so that the fd the kernel
// installed is not leaked. It walks the attributes as far as they are
// intact and returns the last SOCKFD among them, or -1.
func scanSockFD(b []byte) int32 {
	const hdr = 4 // struct nlattr
	fd := int32(-1)
	for len(b) >= hdr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) &^ (netlink.Nested | netlink.NetByteOrder)
		if l < hdr || l > len(b) {
			break
		}
		if t == acceptSockFD && l == hdr+4 {
			fd = int32(binary.NativeEndian.Uint32(b[hdr : hdr+4]))
		}
		l = (l + 3) &^ 3 // NLA_ALIGN
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return fd
}

// encodeAcceptRequest builds the attributes of an ACCEPT request: the
// handler class and nothing else, as the kernel's ACCEPT policy allows
// nothing else.
func encodeAcceptRequest() ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(acceptHandlerClass, handlerClassTLSHD)
	return ae.Encode()
}

// encodeDone builds the attributes of a DONE request, leaving out any
// attribute the kernel's DONE policy does not list: strict policies reject
// the whole message for one unknown attribute, and the consumer then waits
// for its timeout. SESSION_ID is sent only if sessionID (the policy has
// attribute 4 as NLA_U32, see Capabilities.SessionID); omitted reports
// that d.SessionID was left out.
func encodeDone(d Done, policy AttrSet, sessionID bool) (b []byte, omitted bool, err error) {
	if d.Status > maxErrno {
		return nil, false, fmt.Errorf("genl: DONE status %d above %d", uint64(d.Status), maxErrno)
	}
	if !policy.Has(doneSockFD) {
		return nil, false, errors.New("genl: kernel's DONE policy lacks SOCKFD")
	}
	ae := netlink.NewAttributeEncoder()
	if policy.Has(doneStatus) {
		ae.Uint32(doneStatus, uint32(d.Status))
	}
	ae.Int32(doneSockFD, d.FD)
	if policy.Has(doneRemoteAuth) {
		for _, s := range d.RemoteAuth {
			ae.Int32(doneRemoteAuth, s)
		}
	}
	if d.SessionID != 0 {
		if sessionID && policy.Has(KeyUpdateDoneSessionIDAttr) {
			ae.Uint32(KeyUpdateDoneSessionIDAttr, d.SessionID)
		} else {
			omitted = true
		}
	}
	b, err = ae.Encode()
	return b, omitted, err
}
