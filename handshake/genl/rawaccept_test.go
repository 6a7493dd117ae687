package genl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
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
		{"errno out of range", nlmsg(unix.NLMSG_ERROR, seq, cat(s32(-5000), make([]byte, unix.NLMSG_HDRLEN))), true, Request{FD: -1}, ErrBadReply},
		{"negative errno", nlmsg(unix.NLMSG_ERROR, seq, cat(s32(7), make([]byte, unix.NLMSG_HDRLEN))), true, Request{FD: -1}, ErrBadReply},
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

// TestParseTruncatedReply: a datagram cut by MSG_TRUNC is ours (its
// request is lost: done, ErrTruncated, and the SOCKFD if it arrived) only
// if its header says so; anything else is skipped with FD -1.
func TestParseTruncatedReply(t *testing.T) {
	const fam, seq = 0x1c, 9
	full := acceptMsg(t, fam, seq, Request{FD: 11, MessageType: ClientHello, Auth: PSK})
	hdrOnly := func(typ uint16, s uint32) []byte { return nlmsg(typ, s, nil)[:unix.NLMSG_HDRLEN] }
	for _, tc := range []struct {
		name   string
		b      []byte
		done   bool
		wantFD int32
	}{
		{"ours, SOCKFD arrived", full, true, 11},
		{"ours, cut inside the genl header", full[:unix.NLMSG_HDRLEN+2], true, -1},
		{"ours, header only", hdrOnly(fam, seq), true, -1},
		{"our error message, cut", errMsg(unix.EPERM, seq)[:unix.NLMSG_HDRLEN+2], true, -1},
		{"another exchange's, header only", hdrOnly(fam, seq+1), false, -1},
		{"another type, ours by seq", hdrOnly(unix.NLMSG_DONE, seq), false, -1},
		{"shorter than a header", full[:unix.NLMSG_HDRLEN-1], true, -1},
	} {
		r, done, err := parseTruncatedReply(tc.b, fam, seq)
		if done != tc.done || r.FD != tc.wantFD || done != errors.Is(err, ErrTruncated) {
			t.Errorf("%s: FD %d, done %v, err %v; want FD %d, done %v", tc.name, r.FD, done, err, tc.wantFD, tc.done)
		}
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

// rawConn returns a Conn whose ACCEPT socket is one end of a
// SOCK_SEQPACKET socket pair, and the other end, which plays the kernel:
// a test queues reply datagrams there (before Accept, as the kernel
// answers within sendmsg, or later from a goroutine) and reads the
// requests. Real sockets give real EAGAIN, MSG_TRUNC, EOF and SCM_RIGHTS.
func rawConn(t *testing.T) (c *Conn, kernel int) {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(sp[0]); unix.Close(sp[1]) })
	// Bounded, like openRawAccept's 5 s, but short: only the "no reply
	// ever" case waits for it.
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(sp[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	c = &Conn{family: rawFam}
	c.raw = newRawAccept(sp[0], rawFam, &c.stats)
	return c, sp[1]
}

const rawFam = 0x1c

func queue(t *testing.T, fd int, b []byte, oob []byte) {
	t.Helper()
	if err := unix.Sendmsg(fd, b, oob, nil, 0); err != nil {
		t.Errorf("queueing a reply: %v", err) // not Fatal: goroutines call it too
	}
}

// readRequest reads one ACCEPT request on the kernel's end and checks it.
func readRequest(t *testing.T, fd int, seq uint32) {
	t.Helper()
	b := make([]byte, 256)
	n, err := unix.Read(fd, b)
	if err != nil {
		t.Errorf("reading the request: %v", err)
		return
	}
	want, _ := encodeAcceptMessage(rawFam, seq)
	if string(b[:n]) != string(want) {
		t.Errorf("request % x, want % x", b[:n], want)
	}
}

func TestRawAccept(t *testing.T) {
	want := Request{FD: 11, MessageType: ClientHello, Auth: PSK, PeerIdentities: []int32{42}}
	c, k := rawConn(t)
	queue(t, k, acceptMsg(t, rawFam, 1, want), nil)
	got, err := c.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	readRequest(t, k, 1)

	// The next exchange has the next sequence number; nothing pending.
	queue(t, k, errMsg(unix.EAGAIN, 2), nil)
	if _, err := c.Accept(); !errors.Is(err, ErrNoRequest) || !errors.Is(err, unix.EAGAIN) {
		t.Errorf("Accept() = %v, want ErrNoRequest", err)
	}
	readRequest(t, k, 2)
	if s := c.Stats(); s.Accepted != 1 || s.NoRequest != 1 || s.Retry+s.BadReply+s.Fatal != 0 {
		t.Errorf("Stats = %+v, want 1 accepted and 1 no-request", s)
	}
}

// The reply comes after sendto returned: Accept waits for it in a
// blocking receive.
func TestRawAcceptLateReply(t *testing.T) {
	c, k := rawConn(t)
	want := Request{FD: 5, MessageType: ServerHello, Auth: X509}
	go func() {
		readRequest(t, k, 1)
		queue(t, k, acceptMsg(t, rawFam, 1, want), nil)
	}()
	got, err := c.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

// classOf names an Accept error's class, as a daemon tells them apart.
func classOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNoRequest):
		return "none"
	case errors.Is(err, ErrRetry):
		return "retry"
	case errors.Is(err, ErrBadReply):
		return "bad"
	}
	return "fatal"
}

func TestRawAcceptFailures(t *testing.T) {
	long := Request{FD: 21, MessageType: ClientHello, Auth: PSK, PeerName: string(bytes.Repeat([]byte{'x'}, 9000))}
	tests := []struct {
		name   string
		setup  func(t *testing.T, c *Conn, k int)
		class  string
		is     error // also matched, if not nil
		wantFD int32
	}{
		{
			name: "EAGAIN after a foreign datagram",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, errMsg(unix.EAGAIN, 77), nil) // another exchange's
			},
			class: "retry", is: unix.EAGAIN, wantFD: -1,
		},
		{
			name:  "no reply at all within the receive timeout",
			setup: func(*testing.T, *Conn, int) {},
			class: "retry", is: unix.EAGAIN, wantFD: -1,
		},
		{
			name: "kernel out of memory",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, errMsg(unix.ENOMEM, 1), nil)
			},
			class: "retry", is: unix.ENOMEM, wantFD: -1,
		},
		{
			name: "kernel out of fds",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, errMsg(unix.EMFILE, 1), nil)
			},
			class: "retry", is: unix.EMFILE, wantFD: -1,
		},
		{
			name: "not permitted",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, errMsg(unix.EPERM, 1), nil)
			},
			class: "fatal", is: unix.EPERM, wantFD: -1,
		},
		{
			name: "our socket closed",
			setup: func(t *testing.T, c *Conn, k int) {
				// A closed duplicate, so that cleanup closes no fd
				// number twice.
				fd, err := unix.Dup(c.raw.fd)
				if err != nil {
					t.Fatal(err)
				}
				unix.Close(fd)
				c.raw.fd = fd
			},
			class: "fatal", is: unix.EBADF, wantFD: -1,
		},
		{
			name: "the other end closed before the request",
			setup: func(t *testing.T, c *Conn, k int) {
				unix.Shutdown(k, unix.SHUT_RDWR)
			},
			class: "fatal", is: unix.EPIPE, wantFD: -1,
		},
		{
			name: "the other end closed after the request",
			setup: func(t *testing.T, c *Conn, k int) {
				go func() {
					readRequest(t, k, 1)
					unix.Shutdown(k, unix.SHUT_WR)
				}()
			},
			class: "fatal", wantFD: -1,
		},
		{
			name: "truncated reply: its SOCKFD is handed back",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, acceptMsg(t, rawFam, 1, long), nil)
			},
			class: "bad", is: ErrTruncated, wantFD: 21,
		},
		{
			name: "truncated reply cut before SOCKFD",
			setup: func(t *testing.T, c *Conn, k int) {
				c.raw.buf = c.raw.buf[:unix.NLMSG_HDRLEN+2]
				queue(t, k, acceptMsg(t, rawFam, 1, long), nil)
			},
			class: "bad", is: ErrTruncated, wantFD: -1,
		},
		{
			name: "truncated foreign datagram, then ours",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, acceptMsg(t, rawFam, 9, long), nil)
				queue(t, k, errMsg(unix.EAGAIN, 1), nil)
			},
			class: "none", wantFD: -1,
		},
		{
			name: "reply without SOCKFD",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, nlmsg(rawFam, 1, cat([]byte{cmdAccept, 1, 0, 0}, attr(acceptMessageType, u32(1)))), nil)
			},
			class: "bad", is: ErrNoSockFD, wantFD: -1,
		},
		{
			name: "undecodable reply: its SOCKFD is handed back",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, nlmsg(rawFam, 1, cat([]byte{cmdAccept, 1, 0, 0}, attr(acceptSockFD, s32(13)), attr(acceptTimeout, []byte{1}))), nil)
			},
			class: "bad", wantFD: 13,
		},
		{
			name: "datagram that is no netlink message",
			setup: func(t *testing.T, c *Conn, k int) {
				queue(t, k, []byte{1, 2, 3}, nil)
			},
			class: "bad", wantFD: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, k := rawConn(t)
			tt.setup(t, c, k)
			r, err := c.Accept()
			if got := classOf(err); got != tt.class {
				t.Errorf("Accept() = %v: class %s, want %s", err, got, tt.class)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Accept() = %v, want it to match %v", err, tt.is)
			}
			if r.FD != tt.wantFD {
				t.Errorf("FD = %d, want %d", r.FD, tt.wantFD)
			}
			s := c.Stats()
			n := map[string]uint64{"ok": s.Accepted, "none": s.NoRequest, "retry": s.Retry, "bad": s.BadReply, "fatal": s.Fatal}
			if n[tt.class] != 1 || s.Accepted+s.NoRequest+s.Retry+s.BadReply+s.Fatal != 1 {
				t.Errorf("Stats = %+v, want exactly one %s", s, tt.class)
			}
			if errors.Is(err, ErrTruncated) && s.Truncated != 1 || errors.Is(err, ErrNoSockFD) && s.NoSockFD != 1 {
				t.Errorf("Stats = %+v: truncation or missing SOCKFD not counted", s)
			}
		})
	}
}

// EINTR, which a real socket returns only when a signal lands at the
// wrong moment, is injected at each system call.
func TestRawAcceptEINTR(t *testing.T) {
	want := Request{FD: 3, MessageType: ClientHello, Auth: Unauth}
	for _, at := range []string{"nonblocking", "blocking"} {
		t.Run(at, func(t *testing.T) {
			c, k := rawConn(t)
			interrupted := false
			waiting := make(chan struct{}) // closed once Accept found nothing queued
			var once sync.Once
			real := c.raw.recv
			c.raw.recv = func(fd int, b, oob []byte, flags int) (int, int, int, syscall.Errno) {
				if !interrupted && (flags&unix.MSG_DONTWAIT != 0) == (at == "nonblocking") {
					interrupted = true
					return 0, 0, 0, unix.EINTR
				}
				n, oobn, mflags, e := real(fd, b, oob, flags)
				if e == unix.EAGAIN && flags&unix.MSG_DONTWAIT != 0 {
					once.Do(func() { close(waiting) })
				}
				return n, oobn, mflags, e
			}
			go func() {
				readRequest(t, k, 1)
				if at == "blocking" {
					<-waiting // so that Accept reaches the blocking receive
				}
				queue(t, k, acceptMsg(t, rawFam, 1, want), nil)
			}()
			got, err := c.Accept()
			if err != nil || !interrupted {
				t.Fatalf("Accept() = %v, interrupted %v; want a request after EINTR", err, interrupted)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("send", func(t *testing.T) {
		c, _ := rawConn(t)
		c.raw.send = func(int, []byte) syscall.Errno { return unix.EINTR }
		if _, err := c.Accept(); classOf(err) != "retry" || !errors.Is(err, unix.EINTR) {
			t.Errorf("Accept() = %v, want ErrRetry with EINTR", err)
		}
	})
	t.Run("receive error", func(t *testing.T) {
		c, _ := rawConn(t)
		c.raw.recv = func(int, []byte, []byte, int) (int, int, int, syscall.Errno) { return 0, 0, 0, unix.ENOBUFS }
		if r, err := c.Accept(); classOf(err) != "retry" || !errors.Is(err, unix.ENOBUFS) || r.FD != -1 {
			t.Errorf("Accept() = FD %d, %v; want FD -1, ErrRetry with ENOBUFS", r.FD, err)
		}
	})
	t.Run("receive error after EAGAIN", func(t *testing.T) {
		// Nothing queued yet (EAGAIN), then the blocking receive fails.
		c, _ := rawConn(t)
		c.raw.recv = func(_ int, _, _ []byte, flags int) (int, int, int, syscall.Errno) {
			if flags&unix.MSG_DONTWAIT != 0 {
				return 0, 0, 0, unix.EAGAIN
			}
			return 0, 0, 0, unix.EIO
		}
		if r, err := c.Accept(); classOf(err) != "fatal" || !errors.Is(err, unix.EIO) || r.FD != -1 {
			t.Errorf("Accept() = FD %d, %v; want FD -1, a fatal EIO", r.FD, err)
		}
	})
}

// A file descriptor that arrives as SCM_RIGHTS is closed, not leaked.
func TestRawAcceptClosesPassedFDs(t *testing.T) {
	c, k := rawConn(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	want := Request{FD: 9, MessageType: ClientHello, Auth: Unauth}
	queue(t, k, acceptMsg(t, rawFam, 1, want), unix.UnixRights(p[1]))
	unix.Close(p[1]) // the only write end left is the one in flight
	if _, err := c.Accept(); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if s := c.Stats(); s.StrayFDs != 1 {
		t.Errorf("StrayFDs = %d, want 1", s.StrayFDs)
	}
	// Every write end is closed: the read end sees end of file.
	if n, err := unix.Read(p[0], make([]byte, 1)); n != 0 || err != nil {
		t.Errorf("read from the pipe = %d, %v; want end of file: the passed fd is still open", n, err)
	}
}

// TestRawAcceptRealKernel runs the exchange on a real generic netlink
// socket against a family ID nobody registered: the kernel answers within
// sendto with ENOENT, which must come back as a fatal error, through the
// same sequence matching as a real ACCEPT reply.
func TestRawAcceptRealKernel(t *testing.T) {
	var stats counters
	r, err := openRawAccept(1000, &stats)
	if err != nil {
		t.Fatalf("openRawAccept: %v", err)
	}
	defer r.close()
	for seq := uint32(1); seq <= 2; seq++ {
		_, err := r.accept()
		if !errors.Is(err, unix.ENOENT) || classOf(err) != "fatal" {
			t.Fatalf("ACCEPT %d to an unregistered family = %v, want a fatal ENOENT", seq, err)
		}
	}
}
