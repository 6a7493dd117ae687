package genl

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// nlmsg frames payload as one netlink message.
func nlmsg(typ uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(payload)+3)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:4], uint32(unix.NLMSG_HDRLEN+len(payload)))
	ne.PutUint16(b[4:6], typ)
	ne.PutUint32(b[8:12], seq)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// errMsg is an NLMSG_ERROR carrying -errno for a request of seq.
func errMsg(errno syscall.Errno, seq uint32) []byte {
	return nlmsg(unix.NLMSG_ERROR, seq, cat(s32(-int32(errno)), make([]byte, unix.NLMSG_HDRLEN)))
}

// acceptMsg is the kernel's ACCEPT reply for r, as the family's message.
func acceptMsg(t testing.TB, family uint16, seq uint32, r Request) []byte {
	return nlmsg(family, seq, cat([]byte{cmdAccept, familyVersion, 0, 0}, encodeAcceptReply(t, r)))
}

func TestEncodeAcceptMessage(t *testing.T) {
	b, err := encodeAcceptMessage(0x1c, 7)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ParseNetlinkMessage = %d messages, %v", len(msgs), err)
	}
	h := msgs[0].Header
	if h.Type != 0x1c || h.Flags != unix.NLM_F_REQUEST || h.Seq != 7 || int(h.Len) != len(b) {
		t.Errorf("header %+v, want type 0x1c, flags REQUEST only (no ACK), seq 7, len %d", h, len(b))
	}
	attrs, _ := encodeAcceptRequest()
	if want := cat([]byte{cmdAccept, familyVersion, 0, 0}, attrs); string(msgs[0].Data) != string(want) {
		t.Errorf("payload % x, want % x", msgs[0].Data, want)
	}
}

func TestParseAcceptReply(t *testing.T) {
	const fam, seq = 0x1c, 9
	want := Request{FD: 11, MessageType: ClientHello, Timeout: 5 * time.Second, Auth: PSK, PeerIdentities: []int32{42}}
	tests := []struct {
		name    string
		b       []byte
		done    bool
		want    Request
		wantErr error // nil: no error
	}{
		{"request", acceptMsg(t, fam, seq, want), true, want, nil},
		{"nothing pending", errMsg(unix.EAGAIN, seq), true, Request{FD: -1}, ErrNoRequest},
		{"other errno", errMsg(unix.EPERM, seq), true, Request{FD: -1}, unix.EPERM},
		{"stale reply, then ours", cat(errMsg(unix.EAGAIN, seq-1), acceptMsg(t, fam, seq, want)), true, want, nil},
		{"only a stale reply", errMsg(unix.EAGAIN, seq-1), false, Request{FD: -1}, nil},
		{"ACK only", errMsg(0, seq), false, Request{FD: -1}, nil},
		{"another family", acceptMsg(t, fam+1, seq, want), false, Request{FD: -1}, nil},
	}
	for _, tt := range tests {
		got, done, err := parseAcceptReply(tt.b, fam, seq, false)
		if done != tt.done {
			t.Errorf("%s: done = %v, want %v", tt.name, done, tt.done)
		}
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: request mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
	// A reply whose attributes do not decode still hands over the fd.
	bad := nlmsg(fam, seq, cat([]byte{cmdAccept, familyVersion, 0, 0}, attr(acceptSockFD, s32(13)), attr(acceptTimeout, []byte{1})))
	got, done, err := parseAcceptReply(bad, fam, seq, false)
	if !done || err == nil || got.FD != 13 {
		t.Errorf("undecodable reply: FD %d, done %v, err %v; want FD 13, done, an error", got.FD, done, err)
	}
	if _, done, err := parseAcceptReply([]byte{1, 2, 3}, fam, seq, false); !done || err == nil {
		t.Errorf("truncated datagram: done %v, err %v; want done with an error", done, err)
	}
}

// FuzzParseAcceptReply: any datagram gives a request, an error or "read
// on", never a panic; a request is what its attributes decode to.
func FuzzParseAcceptReply(f *testing.F) {
	f.Add(acceptMsg(f, 0x1c, 1, Request{FD: 7, Auth: PSK, PeerIdentities: []int32{1}}), false)
	f.Add(acceptMsg(f, 0x1c, 1, Request{FD: 7, MessageType: ClientKeyUpdate, Auth: PSK, PeerIdentities: []int32{1},
		KeyUpdate: KeyUpdateReceived, SessionID: 77}), true)
	f.Add(acceptMsg(f, 0x1c, 1, Request{FD: 7, MessageType: ClientHello, Unknown: []uint16{10}}), false)
	f.Add(errMsg(unix.EAGAIN, 1), false)
	f.Add(errMsg(unix.ENOMEM, 1), false)
	f.Add(cat(errMsg(0, 1), acceptMsg(f, 0x1c, 1, Request{FD: 3})), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, keyUpdate bool) {
		r, done, err := parseAcceptReply(b, 0x1c, 1, keyUpdate)
		if !done && (err != nil || r.FD != -1) {
			t.Fatalf("not done but err %v, FD %d", err, r.FD)
		}
		if done && err == nil {
			if r.FD < 0 {
				t.Fatalf("a request with FD %d", r.FD)
			}
			if diff := cmp.Diff(r, mustDecode(t, encodeAcceptReply(t, r), keyUpdate)); diff != "" {
				t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
			}
		}
	})
}

func mustDecode(t *testing.T, b []byte, keyUpdate bool) Request {
	r, err := decodeAccept(b, keyUpdate)
	if err != nil {
		t.Fatalf("re-encoded request does not decode: %v", err)
	}
	return r
}
