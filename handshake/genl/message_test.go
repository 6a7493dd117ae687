package genl

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
)

// attr encodes one raw attribute in host byte order, so tests can build
// replies the encoder would refuse (wrong sizes, odd orders).
func attr(typ uint16, data []byte) []byte {
	n := 4 + len(data)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(n))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func s32(v int32) []byte  { return u32(uint32(v)) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestDecodeAccept(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		want    Request
		wantErr bool
	}{
		{
			name: "psk client, every attribute",
			b: cat(
				attr(acceptSockFD, s32(7)),
				attr(acceptMessageType, u32(1)),
				attr(acceptTimeout, u32(10000)),
				attr(acceptAuthMode, u32(2)),
				attr(acceptPeername, []byte("nfs.example.org\x00")),
				attr(acceptKeyring, s32(0x2a)),
				attr(acceptPeerIdentity, s32(101)),
				attr(acceptPeerIdentity, s32(102)),
				attr(acceptPeerIdentity, s32(103)),
				attr(acceptPeerIdentity, s32(104)),
				attr(acceptPeerIdentity, s32(105)),
				attr(netlink.Nested|acceptCertificate, cat(attr(x509Cert, s32(201)), attr(x509Privkey, s32(202)))),
				attr(netlink.Nested|acceptCertificate, cat(attr(x509Privkey, s32(302)), attr(x509Cert, s32(301)))),
			),
			want: Request{
				FD:             7,
				MessageType:    ClientHello,
				Timeout:        10 * time.Second,
				Auth:           PSK,
				PeerIdentities: []int32{101, 102, 103, 104, 105},
				Certificates:   []CertPair{{201, 202}, {301, 302}},
				PeerName:       "nfs.example.org",
				Keyring:        0x2a,
			},
		},
		{
			name: "order does not matter",
			b: cat(
				attr(acceptAuthMode, u32(3)),
				attr(acceptPeerIdentity, s32(5)),
				attr(acceptMessageType, u32(2)),
				attr(acceptSockFD, s32(12)),
			),
			want: Request{FD: 12, MessageType: ServerHello, Auth: X509, PeerIdentities: []int32{5}},
		},
		{
			name: "unknown attributes are recorded and skipped",
			b: cat(
				attr(acceptSockFD, s32(3)),
				attr(10, u32(1)),
				attr(acceptAuthMode, u32(1)),
				attr(11, []byte{1, 2, 3, 4, 5, 6, 7, 8}),
				attr(netlink.Nested|12, attr(1, u32(0))),
			),
			want: Request{FD: 3, Auth: Unauth, Unknown: []uint16{10, 11, 12}},
		},
		{
			name: "server psk identity 0 and handler class",
			b: cat(
				attr(acceptSockFD, s32(9)),
				attr(acceptHandlerClass, u32(1)),
				attr(acceptPeerIdentity, s32(0)),
			),
			want: Request{FD: 9, HandlerClass: 1, PeerIdentities: []int32{0}},
		},
		{
			name: "peer name ends at the first NUL",
			b:    cat(attr(acceptSockFD, s32(4)), attr(acceptPeername, []byte("a\x00b\x00"))),
			want: Request{FD: 4, PeerName: "a"},
		},
		{
			name: "certificate nest ignores unknown members",
			b: cat(
				attr(acceptSockFD, s32(4)),
				attr(netlink.Nested|acceptCertificate, cat(attr(x509Cert, s32(1)), attr(9, u32(9)))),
			),
			want: Request{FD: 4, Certificates: []CertPair{{Cert: 1}}},
		},
		{
			name:    "missing SOCKFD",
			b:       cat(attr(acceptAuthMode, u32(2)), attr(acceptPeerIdentity, s32(5))),
			want:    Request{FD: -1, Auth: PSK, PeerIdentities: []int32{5}},
			wantErr: true,
		},
		{
			name:    "short SOCKFD",
			b:       cat(attr(acceptSockFD, []byte{1, 0})),
			want:    Request{FD: -1},
			wantErr: true,
		},
		{
			name:    "wrong-size integer after SOCKFD keeps the fd",
			b:       cat(attr(acceptSockFD, s32(8)), attr(acceptAuthMode, []byte{2, 0, 0, 0, 0, 0, 0, 0})),
			want:    Request{FD: 8},
			wantErr: true,
		},
		{
			name:    "wrong-size integer before SOCKFD still finds the fd",
			b:       cat(attr(acceptTimeout, []byte{1}), attr(acceptSockFD, s32(8))),
			want:    Request{FD: 8},
			wantErr: true,
		},
		{
			name:    "wrong-size certificate member",
			b:       cat(attr(acceptSockFD, s32(8)), attr(netlink.Nested|acceptCertificate, attr(x509Cert, []byte{1, 2}))),
			want:    Request{FD: 8},
			wantErr: true,
		},
		{
			name:    "truncated attribute header still hands over the fd",
			b:       cat(attr(acceptSockFD, s32(8)), []byte{8, 0}),
			want:    Request{FD: 8},
			wantErr: true,
		},
		{
			name:    "empty",
			b:       nil,
			want:    Request{FD: -1},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAccept(tt.b, false)
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodeAccept() error = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadReply) {
				t.Errorf("error %v does not match ErrBadReply", err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "genl: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decodeAccept() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeDone(t *testing.T) {
	full := AttrSet{doneStatus, doneSockFD, doneRemoteAuth}
	tests := []struct {
		name      string
		d         Done
		policy    AttrSet
		sessionID bool // Capabilities.SessionID
		want      []byte
		omitted   bool
		wantErr   bool
	}{
		{
			name:      "v7 kernel: SESSION_ID sent",
			d:         Done{FD: 7, RemoteAuth: []int32{0x1234}, SessionID: 0xabcd},
			policy:    AttrSet{doneStatus, doneSockFD, doneRemoteAuth, KeyUpdateDoneSessionIDAttr},
			sessionID: true,
			want: cat(
				attr(doneStatus, u32(0)),
				attr(doneSockFD, s32(7)),
				attr(doneRemoteAuth, s32(0x1234)),
				attr(KeyUpdateDoneSessionIDAttr, u32(0xabcd)),
			),
		},
		{
			name:      "v7 kernel, no session to keep: no SESSION_ID",
			d:         Done{FD: 7, Status: syscall.EIO},
			policy:    AttrSet{doneStatus, doneSockFD, doneRemoteAuth, KeyUpdateDoneSessionIDAttr},
			sessionID: true,
			want:      cat(attr(doneStatus, u32(5)), attr(doneSockFD, s32(7))),
		},
		{
			name:    "TAG kernel: attribute 4 is a string, SESSION_ID left out",
			d:       Done{FD: 7, SessionID: 0xabcd},
			policy:  AttrSet{doneStatus, doneSockFD, doneRemoteAuth, 4},
			want:    cat(attr(doneStatus, u32(0)), attr(doneSockFD, s32(7))),
			omitted: true,
		},
		{
			name:    "6.12: SESSION_ID left out",
			d:       Done{FD: 7, SessionID: 9},
			policy:  full,
			want:    cat(attr(doneStatus, u32(0)), attr(doneSockFD, s32(7))),
			omitted: true,
		},
		{
			name:   "success with remote auth",
			d:      Done{FD: 7, RemoteAuth: []int32{0x1234, 0x5678}},
			policy: full,
			want: cat(
				attr(doneStatus, u32(0)),
				attr(doneSockFD, s32(7)),
				attr(doneRemoteAuth, s32(0x1234)),
				attr(doneRemoteAuth, s32(0x5678)),
			),
		},
		{
			name:   "policy without REMOTE_AUTH drops it",
			d:      Done{FD: 7, Status: syscall.EACCES, RemoteAuth: []int32{1}},
			policy: AttrSet{doneStatus, doneSockFD},
			want:   cat(attr(doneStatus, u32(13)), attr(doneSockFD, s32(7))),
		},
		{
			name:    "status above MAX_ERRNO",
			d:       Done{FD: 7, Status: 4096},
			policy:  full,
			wantErr: true,
		},
		{
			name:    "policy without SOCKFD",
			d:       Done{FD: 7},
			policy:  AttrSet{doneStatus},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, omitted, err := encodeDone(tt.d, tt.policy, tt.sessionID)
			if omitted != tt.omitted {
				t.Errorf("omitted = %v, want %v", omitted, tt.omitted)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("encodeDone() error = %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("encodeDone() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{ClientHello.String(), "ClientHello"},
		{ServerHello.String(), "ServerHello"},
		{ClientKeyUpdate.String(), "ClientKeyUpdate"},
		{ServerKeyUpdate.String(), "ServerKeyUpdate"},
		{MessageType(5).String(), "MessageType(5)"},
		{KeyUpdateUnspec.String(), "unspec"},
		{KeyUpdateSend.String(), "send"},
		{KeyUpdateReceived.String(), "received"},
		{KeyUpdateReceivedRequestUpdate.String(), "received_request_update"},
		{KeyUpdateType(4).String(), "KeyUpdateType(4)"},
		{Unauth.String(), "unauth"},
		{PSK.String(), "psk"},
		{X509.String(), "x509"},
		{AuthMode(0).String(), "AuthMode(0)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestErrNoFamilyIsNotExist(t *testing.T) {
	if !errors.Is(ErrNoFamily, os.ErrNotExist) {
		t.Error("ErrNoFamily does not match os.ErrNotExist")
	}
	if !strings.Contains(ErrNoFamily.Error(), "CONFIG_NET_HANDSHAKE") {
		t.Errorf("ErrNoFamily = %q, want it to name CONFIG_NET_HANDSHAKE", ErrNoFamily)
	}
}

// FuzzDecodeAccept checks that decoding never panics, and that whatever
// decodes re-encodes to the same Request: nothing is half-decoded.
func FuzzDecodeAccept(f *testing.F) {
	f.Add(encodeAcceptReply(f, Request{
		FD: 7, MessageType: ClientHello, Timeout: 10 * time.Second, Auth: PSK,
		PeerIdentities: []int32{1, 2}, Certificates: []CertPair{{3, 4}},
		PeerName: "host", Keyring: 5, Unknown: []uint16{10, 11},
	}), false)
	// A v7 KeyUpdate request, and the same bytes from a kernel without
	// the proposal (attributes 10 and 11 unknown).
	ku := encodeAcceptReply(f, Request{
		FD: 7, MessageType: ServerKeyUpdate, Auth: PSK, PeerIdentities: []int32{1},
		KeyUpdate: KeyUpdateReceivedRequestUpdate, SessionID: 0x1234,
	})
	f.Add(ku, true)
	f.Add(ku, false)
	f.Add(cat(attr(acceptSockFD, s32(1)), attr(KeyUpdateAcceptRequestAttr, []byte{1})), true)
	f.Add(cat(attr(acceptSockFD, s32(1)), attr(KeyUpdateAcceptSessionIDAttr, u32(0)), attr(KeyUpdateAcceptRequestAttr, u32(99))), true)
	f.Add(cat(attr(acceptSockFD, s32(1)), attr(acceptTimeout, []byte{1})), false)
	f.Add(cat(attr(acceptSockFD, s32(1)), attr(netlink.Nested|acceptCertificate, attr(x509Cert, []byte{1}))), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, keyUpdate bool) {
		r, err := decodeAccept(b, keyUpdate)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("error %v does not match ErrBadReply", err)
			}
			return
		}
		if !keyUpdate && (r.KeyUpdate != 0 || r.SessionID != 0) {
			t.Fatalf("KeyUpdate attributes decoded from a kernel without the proposal: %+v", r)
		}
		r2, err := decodeAccept(encodeAcceptReply(t, r), keyUpdate)
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", r, err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}
