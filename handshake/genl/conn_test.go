package genl

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel answers GETPOLICY from its policies and passes handshake
// family requests to accept and done. A nil policy answers EOPNOTSUPP.
type fakeKernel struct {
	acceptPolicy, donePolicy map[uint16][]policyAttr
	accept, done             genltest.Func
}

func (k *fakeKernel) dial(t *testing.T) *Conn {
	t.Helper()
	gc := genltest.Dial(genltest.ServeFamily(testFamily, k.serve(t)))
	t.Cleanup(func() { gc.Close() })
	c, err := NewConn(gc)
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	return c
}

func (k *fakeKernel) serve(t *testing.T) genltest.Func {
	return func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		switch {
		case nreq.Header.Type == unix.GENL_ID_CTRL && greq.Header.Command == unix.CTRL_CMD_GETPOLICY:
			if want := netlink.Request | netlink.Dump; nreq.Header.Flags != want {
				t.Errorf("GETPOLICY flags = %v, want %v", nreq.Header.Flags, want)
			}
			var fam uint16
			var op uint32
			ad, err := netlink.NewAttributeDecoder(greq.Data)
			if err != nil {
				return nil, err
			}
			for ad.Next() {
				switch ad.Type() {
				case unix.CTRL_ATTR_FAMILY_ID:
					fam = ad.Uint16()
				case unix.CTRL_ATTR_OP:
					op = ad.Uint32()
				}
			}
			// Errors are returned raw, not as genltest.Error: nltest
			// copies the request's flags into its error message, and
			// NLM_F_DUMP's NLM_F_MATCH bit reads as NLM_F_ACK_TLVS.
			if fam != testFamily.ID {
				return nil, unix.ENOENT
			}
			pol := map[uint32]map[uint16][]policyAttr{cmdAccept: k.acceptPolicy, cmdDone: k.donePolicy}[op]
			if pol == nil {
				return nil, unix.EOPNOTSUPP
			}
			return policyDump(t, fam, uint8(op), 0, pol), nil
		case nreq.Header.Type == netlink.HeaderType(testFamily.ID) && greq.Header.Command == cmdAccept && k.accept != nil:
			return k.accept(greq, nreq)
		case nreq.Header.Type == netlink.HeaderType(testFamily.ID) && greq.Header.Command == cmdDone && k.done != nil:
			return k.done(greq, nreq)
		}
		t.Errorf("unexpected request: %+v %+v", nreq.Header, greq.Header)
		return nil, genltest.Error(int(unix.EOPNOTSUPP))
	}
}

func TestNewConnCapabilities(t *testing.T) {
	tests := []struct {
		name string
		k    fakeKernel
		want Capabilities
	}{
		{
			name: "6.12",
			k:    fakeKernel{acceptPolicy: acceptPolicy612, donePolicy: donePolicy612},
			want: Capabilities{
				FamilyID: 0x1f, Version: 1, Probed: true,
				AcceptAttrs: AttrSet{2}, DoneAttrs: AttrSet{1, 2, 3},
			},
		},
		{
			name: "DONE without REMOTE_AUTH",
			k: fakeKernel{acceptPolicy: acceptPolicy612, donePolicy: map[uint16][]policyAttr{
				0: donePolicy612[0][:2],
			}},
			want: Capabilities{
				FamilyID: 0x1f, Version: 1, Probed: true,
				AcceptAttrs: AttrSet{2}, DoneAttrs: AttrSet{1, 2},
			},
		},
		{
			name: "KeyUpdate v7: DONE attribute 4 is u32",
			k: fakeKernel{acceptPolicy: acceptPolicy612, donePolicy: map[uint16][]policyAttr{
				0: append(append([]policyAttr{}, donePolicy612[0]...), policyAttr{num: 4, typ: unix.NL_ATTR_TYPE_U32}),
			}},
			want: Capabilities{
				FamilyID: 0x1f, Version: 1, Probed: true,
				AcceptAttrs: AttrSet{2}, DoneAttrs: AttrSet{1, 2, 3, 4}, SessionID: true,
			},
		},
		{
			name: "session tags: DONE attribute 4 is a string",
			k: fakeKernel{acceptPolicy: acceptPolicy612, donePolicy: map[uint16][]policyAttr{
				0: append(append([]policyAttr{}, donePolicy612[0]...), policyAttr{num: 4, typ: unix.NL_ATTR_TYPE_NUL_STRING}),
			}},
			want: Capabilities{
				FamilyID: 0x1f, Version: 1, Probed: true,
				AcceptAttrs: AttrSet{2}, DoneAttrs: AttrSet{1, 2, 3, 4}, Tags: true,
			},
		},
		{
			name: "probe unsupported: fallback",
			k:    fakeKernel{},
			want: Capabilities{
				FamilyID: 0x1f, Version: 1, Probed: false,
				AcceptAttrs: AttrSet{2}, DoneAttrs: AttrSet{1, 2, 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.k.dial(t).Capabilities()
			if tt.want.Probed != (got.ProbeErr == nil) {
				t.Errorf("Probed = %v but ProbeErr = %v", got.Probed, got.ProbeErr)
			}
			if !tt.want.Probed && !errors.Is(got.ProbeErr, unix.EOPNOTSUPP) {
				t.Errorf("ProbeErr = %v, want EOPNOTSUPP", got.ProbeErr)
			}
			got.ProbeErr = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Capabilities() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCapabilitiesIsACopy(t *testing.T) {
	k := fakeKernel{acceptPolicy: acceptPolicy612, donePolicy: donePolicy612}
	c := k.dial(t)
	caps := c.Capabilities()
	caps.DoneAttrs[2] = 99
	if !c.Capabilities().DoneAttrs.Has(doneRemoteAuth) {
		t.Error("changing the returned Capabilities changed the Conn")
	}
}

func TestNewConnMissingFamily(t *testing.T) {
	gc := genltest.Dial(func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.ENOENT))
	})
	defer gc.Close()
	_, err := NewConn(gc)
	if !errors.Is(err, ErrNoFamily) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NewConn() = %v, want ErrNoFamily and os.ErrNotExist", err)
	}
}

func TestNewConnOtherError(t *testing.T) {
	gc := genltest.Dial(func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.EPERM))
	})
	defer gc.Close()
	_, err := NewConn(gc)
	if err == nil || errors.Is(err, ErrNoFamily) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("NewConn() = %v, want EPERM and not ErrNoFamily", err)
	}
}

func TestAccept(t *testing.T) {
	want := Request{
		FD: 42, MessageType: ClientHello, Timeout: 10 * time.Second, Auth: PSK,
		PeerIdentities: []int32{0x11, 0x22}, PeerName: "server", Keyring: 0x33,
		Certificates: []CertPair{{0x44, 0x55}}, Unknown: []uint16{10, 11},
	}
	k := fakeKernel{
		acceptPolicy: acceptPolicy612, donePolicy: donePolicy612,
		accept: func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
			// The request, exactly: flags Request only (an ACK would
			// be queued after the reply), version 1, HANDLER_CLASS=1.
			if nreq.Header.Flags != netlink.Request {
				t.Errorf("flags = %v, want Request only", nreq.Header.Flags)
			}
			if diff := cmp.Diff(genetlink.Header{Command: cmdAccept, Version: 1}, greq.Header); diff != "" {
				t.Errorf("genl header mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(attr(acceptHandlerClass, u32(1)), greq.Data); diff != "" {
				t.Errorf("attributes mismatch (-want +got):\n%s", diff)
			}
			return []genetlink.Message{{
				Header: genetlink.Header{Command: cmdAccept, Version: 1},
				Data:   encodeAcceptReply(t, want),
			}}, nil
		},
	}
	got, err := k.dial(t).Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Accept() mismatch (-want +got):\n%s", diff)
	}
}

func TestAcceptNoPendingRequest(t *testing.T) {
	k := fakeKernel{
		accept: genltest.CheckRequest(testFamily.ID, cmdAccept, netlink.Request,
			func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
				return nil, genltest.Error(int(unix.EAGAIN))
			}),
	}
	r, err := k.dial(t).Accept()
	if !errors.Is(err, ErrNoRequest) || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("Accept() = %v, want ErrNoRequest and EAGAIN", err)
	}
	if r.FD != -1 {
		t.Errorf("FD = %d, want -1", r.FD)
	}
}

func TestAcceptErrors(t *testing.T) {
	tests := []struct {
		name   string
		reply  func(t *testing.T) ([]genetlink.Message, error)
		wantFD int32
		is     error
	}{
		{
			name:   "permission",
			reply:  func(*testing.T) ([]genetlink.Message, error) { return nil, genltest.Error(int(unix.EPERM)) },
			wantFD: -1,
			is:     unix.EPERM,
		},
		{
			name: "undecodable reply still hands over the fd",
			reply: func(*testing.T) ([]genetlink.Message, error) {
				return []genetlink.Message{{
					Header: genetlink.Header{Command: cmdAccept, Version: 1},
					Data:   cat(attr(acceptSockFD, s32(9)), attr(acceptMessageType, []byte{1})),
				}}, nil
			},
			wantFD: 9,
		},
		{
			name: "no reply message",
			reply: func(*testing.T) ([]genetlink.Message, error) {
				return []genetlink.Message{{Header: genetlink.Header{Command: cmdDone}}}, nil
			},
			wantFD: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := fakeKernel{accept: func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
				return tt.reply(t)
			}}
			r, err := k.dial(t).Accept()
			if err == nil {
				t.Fatal("Accept() succeeded")
			}
			if errors.Is(err, ErrNoRequest) {
				t.Errorf("Accept() = %v, must not be ErrNoRequest", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Accept() = %v, want %v", err, tt.is)
			}
			if r.FD != tt.wantFD {
				t.Errorf("FD = %d, want %d", r.FD, tt.wantFD)
			}
		})
	}
}

func TestDone(t *testing.T) {
	tests := []struct {
		name       string
		donePolicy map[uint16][]policyAttr
		d          Done
		want       []byte
	}{
		{
			name:       "remote auth when the policy has it",
			donePolicy: donePolicy612,
			d:          Done{FD: 42, Status: 0, RemoteAuth: []int32{0x1234}},
			want:       cat(attr(doneStatus, u32(0)), attr(doneSockFD, s32(42)), attr(doneRemoteAuth, s32(0x1234))),
		},
		{
			name:       "no remote auth when the policy lacks it",
			donePolicy: map[uint16][]policyAttr{0: donePolicy612[0][:2]},
			d:          Done{FD: 42, Status: syscall.EKEYREJECTED, RemoteAuth: []int32{0x1234}},
			want:       cat(attr(doneStatus, u32(129)), attr(doneSockFD, s32(42))),
		},
		{
			name:       "fallback after a failed probe",
			donePolicy: nil,
			d:          Done{FD: 5, Status: syscall.ETIMEDOUT, RemoteAuth: []int32{7, 8}},
			want: cat(attr(doneStatus, u32(110)), attr(doneSockFD, s32(5)),
				attr(doneRemoteAuth, s32(7)), attr(doneRemoteAuth, s32(8))),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			k := fakeKernel{
				acceptPolicy: acceptPolicy612, donePolicy: tt.donePolicy,
				done: func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
					called = true
					if want := netlink.Request | netlink.Acknowledge; nreq.Header.Flags != want {
						t.Errorf("flags = %v, want %v", nreq.Header.Flags, want)
					}
					if diff := cmp.Diff(genetlink.Header{Command: cmdDone, Version: 1}, greq.Header); diff != "" {
						t.Errorf("genl header mismatch (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(tt.want, greq.Data); diff != "" {
						t.Errorf("attributes mismatch (-want +got):\n%s", diff)
					}
					return nil, genltest.Error(0) // the ACK
				},
			}
			if err := k.dial(t).Done(tt.d); err != nil {
				t.Fatalf("Done: %v", err)
			}
			if !called {
				t.Error("DONE not sent")
			}
		})
	}
}

func TestDoneError(t *testing.T) {
	k := fakeKernel{
		acceptPolicy: acceptPolicy612, donePolicy: donePolicy612,
		done: func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
			return nil, genltest.Error(int(unix.EBADF))
		},
	}
	err := k.dial(t).Done(Done{FD: 3})
	if !errors.Is(err, unix.EBADF) {
		t.Fatalf("Done() = %v, want EBADF", err)
	}
}
