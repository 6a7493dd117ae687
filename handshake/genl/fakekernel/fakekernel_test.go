package fakekernel_test

import (
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
)

// socket returns one end of a connected socket pair, closed at cleanup,
// standing in for a consumer's socket.
func socket(t *testing.T) int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0]
}

func conn(t *testing.T, k *fakekernel.Kernel) *genl.Conn {
	t.Helper()
	gc := k.Dial()
	c, err := genl.NewConn(gc)
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProbe(t *testing.T) {
	for _, tt := range []struct {
		name      string
		cfg       fakekernel.Config
		probed    bool
		done      genl.AttrSet
		sessionID bool
		tags      bool
	}{
		{"6.12", fakekernel.Linux612(), true, genl.AttrSet{1, 2, 3}, false, false},
		{"zero config", fakekernel.Config{}, true, genl.AttrSet{1, 2, 3}, false, false},
		{"mainline", fakekernel.Mainline(), true, genl.AttrSet{1, 2, 3}, false, false},
		{"no GETPOLICY", func() fakekernel.Config {
			c := fakekernel.Linux612()
			c.NoGetPolicy = true
			return c
		}(), false, genl.AttrSet{1, 2, 3}, false, false},
		{"session tags", fakekernel.SessionTags(), true, genl.AttrSet{1, 2, 3, 4}, false, true},
		{"KeyUpdate v7", fakekernel.KeyUpdateV7(), true, genl.AttrSet{1, 2, 3, 4}, true, false},
		{"attribute 4 of neither proposal", func() fakekernel.Config {
			c := fakekernel.Linux612()
			c.DonePolicy = []uint16{1, 2, 3, 4}
			return c
		}(), true, genl.AttrSet{1, 2, 3, 4}, false, false},
		{"KeyUpdate v7 without GETPOLICY", func() fakekernel.Config {
			c := fakekernel.KeyUpdateV7()
			c.NoGetPolicy = true
			return c
		}(), false, genl.AttrSet{1, 2, 3}, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			caps := conn(t, fakekernel.New(tt.cfg)).Capabilities()
			if caps.Probed != tt.probed {
				t.Errorf("Probed = %v (%v), want %v", caps.Probed, caps.ProbeErr, tt.probed)
			}
			if diff := cmp.Diff(genl.AttrSet{2}, caps.AcceptAttrs); diff != "" {
				t.Errorf("AcceptAttrs mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.done, caps.DoneAttrs); diff != "" {
				t.Errorf("DoneAttrs mismatch (-want +got):\n%s", diff)
			}
			if caps.SessionID != tt.sessionID || caps.Tags != tt.tags {
				t.Errorf("SessionID, Tags = %v, %v; want %v, %v", caps.SessionID, caps.Tags, tt.sessionID, tt.tags)
			}
		})
	}
}

func TestAcceptDone(t *testing.T) {
	k := fakekernel.New(fakekernel.Mainline())
	c := conn(t, k)

	if _, err := c.Accept(); !errors.Is(err, genl.ErrNoRequest) {
		t.Fatalf("Accept on an empty queue = %v, want ErrNoRequest", err)
	}

	sock := socket(t)
	p := k.Submit(sock, fakekernel.Params{
		MessageType:    genl.ClientHello,
		Auth:           genl.PSK,
		PeerIdentities: []int32{0x100, 0x200},
		Timeout:        10 * time.Second,
		Keyring:        0x300,
	})
	select {
	case <-k.Ready():
	default:
		t.Fatal("no READY after Submit")
	}
	if p.FD() != -1 {
		t.Errorf("FD() before ACCEPT = %d, want -1", p.FD())
	}

	r, err := c.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if int(r.FD) == sock || int(r.FD) != p.FD() {
		t.Errorf("Request.FD = %d, want a new fd (submitted %d, handed out %d)", r.FD, sock, p.FD())
	}
	want := genl.Request{
		FD: r.FD, MessageType: genl.ClientHello, Timeout: 10 * time.Second, Auth: genl.PSK,
		PeerIdentities: []int32{0x100, 0x200}, Keyring: 0x300,
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("Request mismatch (-want +got):\n%s", diff)
	}
	if flags, err := unix.FcntlInt(uintptr(r.FD), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("handed-out fd flags = %#x, %v; want FD_CLOEXEC", flags, err)
	}
	if n := k.OpenFDs(); n != 1 {
		t.Errorf("OpenFDs() = %d, want 1", n)
	}

	if err := c.Done(genl.Done{FD: r.FD, RemoteAuth: []int32{0x200}}); err != nil {
		t.Fatalf("Done: %v", err)
	}
	res, err := p.Wait(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fakekernel.Result{Status: 0, RemoteAuth: []int32{0x200}}, res); diff != "" {
		t.Errorf("Result mismatch (-want +got):\n%s", diff)
	}

	// A second DONE for the same socket: the request is gone.
	if err := c.Done(genl.Done{FD: r.FD}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("second Done() = %v, want EBUSY", err)
	}

	unix.Close(int(r.FD))
	if n := k.OpenFDs(); n != 0 {
		t.Errorf("OpenFDs() after close = %d, want 0", n)
	}
}

func TestFIFO(t *testing.T) {
	k := fakekernel.New(fakekernel.Linux612())
	c := conn(t, k)
	var ps []*fakekernel.Pending
	for i := range 3 {
		ps = append(ps, k.Submit(socket(t), fakekernel.Params{
			MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{int32(i)},
		}))
	}
	for i := range 3 {
		r, err := c.Accept()
		if err != nil {
			t.Fatalf("Accept %d: %v", i, err)
		}
		if !slices.Equal(r.PeerIdentities, []int32{int32(i)}) || int(r.FD) != ps[i].FD() {
			t.Errorf("Accept %d gave %+v, want request %d", i, r, i)
		}
		unix.Close(int(r.FD))
	}
	if _, err := c.Accept(); !errors.Is(err, genl.ErrNoRequest) {
		t.Errorf("fourth Accept = %v, want ErrNoRequest", err)
	}
	if k.Queued() != 0 || k.OpenFDs() != 0 {
		t.Errorf("Queued() = %d, OpenFDs() = %d; want 0, 0", k.Queued(), k.OpenFDs())
	}
}

func TestDoneAfterClose(t *testing.T) {
	k := fakekernel.New(fakekernel.Linux612())
	c := conn(t, k)
	p := k.Submit(socket(t), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth})
	r, err := c.Accept()
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(int(r.FD))
	if err := c.Done(genl.Done{FD: r.FD}); !errors.Is(err, unix.EBADF) {
		t.Fatalf("Done() after close = %v, want EBADF", err)
	}
	if _, err := p.Wait(20 * time.Millisecond); err == nil {
		t.Error("request completed although DONE failed; the consumer should time out")
	}
}

func TestDoneUnknownAttribute(t *testing.T) {
	// The daemon could not probe, so it assumes REMOTE_AUTH, but this
	// kernel's policy lacks it: the kernel rejects the whole DONE.
	cfg := fakekernel.Linux612()
	cfg.NoGetPolicy = true
	cfg.DonePolicy = []uint16{1, 2}
	k := fakekernel.New(cfg)
	c := conn(t, k)
	p := k.Submit(socket(t), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{1}})
	r, err := c.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(int(r.FD))
	if err := c.Done(genl.Done{FD: r.FD, RemoteAuth: []int32{1}}); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Done() = %v, want EINVAL", err)
	}
	// Without REMOTE_AUTH it goes through.
	if err := c.Done(genl.Done{FD: r.FD, Status: unix.EACCES}); err != nil {
		t.Fatalf("Done() = %v", err)
	}
	res, err := p.Wait(time.Second)
	if err != nil || res.Status != unix.EACCES {
		t.Errorf("Wait() = %+v, %v; want EACCES", res, err)
	}
}

func TestDoneProbedPolicyDropsRemoteAuth(t *testing.T) {
	cfg := fakekernel.Linux612()
	cfg.DonePolicy = []uint16{1, 2}
	k := fakekernel.New(cfg)
	c := conn(t, k)
	p := k.Submit(socket(t), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{1}})
	r, err := c.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(int(r.FD))
	if err := c.Done(genl.Done{FD: r.FD, RemoteAuth: []int32{1}}); err != nil {
		t.Fatalf("Done: %v", err)
	}
	res, err := p.Wait(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fakekernel.Result{}, res, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Result mismatch (-want +got):\n%s", diff)
	}
}

func TestDoneNotASocketOrNotPending(t *testing.T) {
	k := fakekernel.New(fakekernel.Linux612())
	c := conn(t, k)
	fds := make([]int, 2)
	if err := unix.Pipe2(fds, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := c.Done(genl.Done{FD: int32(fds[0])}); !errors.Is(err, unix.EBADF) {
		t.Errorf("Done(pipe) = %v, want EBADF", err)
	}
	if err := c.Done(genl.Done{FD: int32(socket(t))}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("Done(socket without request) = %v, want EBUSY", err)
	}
}

func TestX509Reply(t *testing.T) {
	k := fakekernel.New(fakekernel.Linux612())
	c := conn(t, k)
	k.Submit(socket(t), fakekernel.Params{
		MessageType:  genl.ClientHello,
		Auth:         genl.X509,
		Certificates: []genl.CertPair{{Cert: 5, PrivKey: 6}},
		PeerName:     "server.example",
		Keyring:      9, // not sent: 6.12 has no KEYRING
	})
	r, err := c.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(int(r.FD))
	want := genl.Request{
		FD: r.FD, MessageType: genl.ClientHello, Auth: genl.X509,
		Certificates: []genl.CertPair{{Cert: 5, PrivKey: 6}}, PeerName: "server.example",
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("Request mismatch (-want +got):\n%s", diff)
	}
}

// TestConcurrentWorkers runs the daemon's loop shape: workers on locked
// threads sweep with ACCEPT until EAGAIN, report DONE, close the fd.
func TestConcurrentWorkers(t *testing.T) {
	k := fakekernel.New(fakekernel.Linux612())
	c := conn(t, k)
	const n = 20
	var ps []*fakekernel.Pending
	for i := range n {
		ps = append(ps, k.Submit(socket(t), fakekernel.Params{
			MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{int32(i + 1)},
		}))
	}
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			runtime.LockOSThread() // never unlocked, as in the daemon: keyrings are per thread
			for {
				r, err := c.Accept()
				if errors.Is(err, genl.ErrNoRequest) {
					errc <- nil
					return
				}
				if err != nil {
					errc <- err
					return
				}
				err = c.Done(genl.Done{FD: r.FD, RemoteAuth: r.PeerIdentities})
				unix.Close(int(r.FD))
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range ps {
		res, err := p.Wait(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != 0 || !slices.Equal(res.RemoteAuth, []int32{int32(i + 1)}) {
			t.Errorf("request %d: %+v", i, res)
		}
	}
	if k.OpenFDs() != 0 {
		t.Errorf("OpenFDs() = %d, want 0", k.OpenFDs())
	}
}

// TestKeyUpdateV7 plays the proposal's flow: a first handshake whose
// DONE returns a session id, then a KeyUpdate request that carries it
// back, whose DONE returns the next one.
func TestKeyUpdateV7(t *testing.T) {
	k := fakekernel.New(fakekernel.KeyUpdateV7())
	c := conn(t, k)
	sock := socket(t)
	p := k.Submit(sock, fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{0}})
	r, err := c.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	want := genl.Request{FD: r.FD, MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{0}}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("first handshake: Request mismatch (-want +got):\n%s", diff)
	}
	if err := c.Done(genl.Done{FD: r.FD, RemoteAuth: []int32{0x10}, SessionID: 0x77}); err != nil {
		t.Fatalf("Done: %v", err)
	}
	if res, err := p.Wait(time.Second); err != nil || res.SessionID != 0x77 {
		t.Fatalf("first DONE = %+v, %v; want SessionID 0x77", res, err)
	}
	unix.Close(int(r.FD))

	for i, typ := range []genl.KeyUpdateType{genl.KeyUpdateReceived, genl.KeyUpdateSend, genl.KeyUpdateReceivedRequestUpdate} {
		id := uint32(0x77 + i)
		p, err := k.SubmitKeyUpdate(sock, genl.ServerKeyUpdate, typ, id, fakekernel.Params{Auth: genl.PSK, PeerIdentities: []int32{0}})
		if err != nil {
			t.Fatalf("SubmitKeyUpdate: %v", err)
		}
		r, err := c.Accept()
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
		want := genl.Request{FD: r.FD, MessageType: genl.ServerKeyUpdate, Auth: genl.PSK, PeerIdentities: []int32{0}, KeyUpdate: typ, SessionID: id}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("KeyUpdate %v: Request mismatch (-want +got):\n%s", typ, diff)
		}
		if err := c.Done(genl.Done{FD: r.FD, SessionID: id + 1}); err != nil {
			t.Fatalf("Done: %v", err)
		}
		if res, err := p.Wait(time.Second); err != nil || res.SessionID != id+1 {
			t.Errorf("DONE = %+v, %v; want SessionID %#x", res, err, id+1)
		}
		unix.Close(int(r.FD))
	}
	if _, err := k.SubmitKeyUpdate(sock, genl.ClientHello, genl.KeyUpdateSend, 1, fakekernel.Params{}); err == nil {
		t.Error("SubmitKeyUpdate with message type ClientHello succeeded")
	}
	if s := c.Stats(); s.SessionIDOmitted != 0 || s.Accepted != 4 {
		t.Errorf("Stats = %+v, want 4 accepted and no SESSION_ID omitted", s)
	}
}

// TestSessionTagsKernel: on a kernel where DONE attribute 4 is TAG and
// ACCEPT attribute 10 is MAX_TAGS, genl reads neither as the KeyUpdate
// proposal's and never sends SESSION_ID.
func TestSessionTagsKernel(t *testing.T) {
	for _, cfg := range []struct {
		name string
		cfg  fakekernel.Config
	}{{"session tags", fakekernel.SessionTags()}, {"6.12", fakekernel.Linux612()}} {
		t.Run(cfg.name, func(t *testing.T) {
			k := fakekernel.New(cfg.cfg)
			c := conn(t, k)
			sock := socket(t)
			if _, err := k.SubmitKeyUpdate(sock, genl.ClientKeyUpdate, genl.KeyUpdateSend, 1, fakekernel.Params{}); err == nil {
				t.Error("SubmitKeyUpdate succeeded on a kernel without the proposal")
			}
			p := k.Submit(sock, fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth})
			r, err := c.Accept()
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			defer unix.Close(int(r.FD))
			if r.KeyUpdate != 0 || r.SessionID != 0 {
				t.Errorf("KeyUpdate, SessionID = %v, %d; want none", r.KeyUpdate, r.SessionID)
			}
			if cfg.cfg.Tags && !slices.Equal(r.Unknown, []uint16{10}) {
				t.Errorf("Unknown = %v, want [10] (MAX_TAGS)", r.Unknown)
			}
			if err := c.Done(genl.Done{FD: r.FD, SessionID: 0x99}); err != nil {
				t.Fatalf("Done: %v (a SESSION_ID the kernel lacks must be left out, not break DONE)", err)
			}
			res, err := p.Wait(time.Second)
			if err != nil || res.SessionID != 0 || res.Tags != nil {
				t.Errorf("DONE = %+v, %v; want neither SESSION_ID nor TAG", res, err)
			}
			if s := c.Stats(); s.SessionIDOmitted != 1 {
				t.Errorf("SessionIDOmitted = %d, want 1", s.SessionIDOmitted)
			}
		})
	}
}

// TestSessionTagsDone: the TAG kernel takes TAG strings in DONE (as
// ktls-utils with session tags sends them) and refuses malformed ones.
func TestSessionTagsDone(t *testing.T) {
	k := fakekernel.New(fakekernel.SessionTags())
	c := conn(t, k)
	gc := k.Dial()
	defer gc.Close()
	sock := socket(t)
	p := k.Submit(sock, fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.Unauth})
	r, err := c.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(int(r.FD))
	done := func(tags ...[]byte) error {
		ae := netlink.NewAttributeEncoder()
		ae.Uint32(1, 0)
		ae.Int32(2, r.FD)
		for _, tag := range tags {
			ae.Bytes(4, tag)
		}
		b, err := ae.Encode()
		if err != nil {
			t.Fatal(err)
		}
		_, err = gc.Execute(genetlink.Message{Header: genetlink.Header{Command: 3, Version: 1}, Data: b},
			k.Family().ID, netlink.Request|netlink.Acknowledge)
		return err
	}
	if err := done([]byte("no NUL")); !errors.Is(err, unix.EINVAL) {
		t.Errorf("DONE with an unterminated TAG = %v, want EINVAL", err)
	}
	if err := done([]byte("a\x00"), []byte("bc\x00")); err != nil {
		t.Fatalf("DONE with TAGs: %v", err)
	}
	if res, err := p.Wait(time.Second); err != nil || !slices.Equal(res.Tags, []string{"a", "bc"}) {
		t.Errorf("DONE = %+v, %v; want Tags [a bc]", res, err)
	}
}
