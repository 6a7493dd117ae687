package genl

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Tests written to kill mutants that lived in tests/mutation (issue 11):
// each pins a boundary the older tests never reached.

// A Wait whose context has a deadline far ahead must still return nil on
// READY: only a deadline already passed ends it early.
func TestWaitWithFutureDeadline(t *testing.T) {
	reads := 0
	l := scripted([][]byte{datagram(t, testFamily.ID, readyMsg(t, 1))}, nil, &reads)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := l.Wait(ctx); err != nil || reads != 1 {
		t.Fatalf("Wait() = %v after %d reads, want nil after 1", err, reads)
	}
}

// fd 0 is a valid socket: a daemon started with stdin closed is handed it.
func TestDecodeAcceptFDZero(t *testing.T) {
	got, err := decodeAccept(cat(attr(acceptSockFD, s32(0)), attr(acceptAuthMode, u32(2))), false)
	if err != nil {
		t.Fatalf("decodeAccept(SOCKFD 0) = %v", err)
	}
	if diff := cmp.Diff(Request{FD: 0, Auth: PSK}, got); diff != "" {
		t.Errorf("decodeAccept() mismatch (-want +got):\n%s", diff)
	}
	// A malformed attribute after SOCKFD 0 keeps fd 0 with the error, so
	// the caller still closes it and sends DONE.
	got, err = decodeAccept(cat(attr(acceptSockFD, s32(0)), attr(acceptAuthMode, []byte{2})), false)
	if !errors.Is(err, ErrBadReply) || got.FD != 0 {
		t.Fatalf("decodeAccept(SOCKFD 0, bad attribute) = FD %d, %v; want FD 0 and ErrBadReply", got.FD, err)
	}
}

// The largest errno encodes; one above it is refused.
func TestEncodeDoneStatusBound(t *testing.T) {
	policy := AttrSet{doneStatus, doneSockFD, doneRemoteAuth}
	b, _, err := encodeDone(Done{FD: 7, Status: syscall.Errno(maxErrno)}, policy, false)
	if err != nil {
		t.Fatalf("encodeDone(status %d) = %v", maxErrno, err)
	}
	if want := cat(attr(doneStatus, u32(maxErrno)), attr(doneSockFD, s32(7))); !cmp.Equal(b, want) {
		t.Errorf("encodeDone(status %d) = %x, want %x", maxErrno, b, want)
	}
	if _, _, err := encodeDone(Done{FD: 7, Status: syscall.Errno(maxErrno + 1)}, policy, false); err == nil {
		t.Errorf("encodeDone(status %d) succeeded", maxErrno+1)
	}
}

// The largest errno the kernel can answer ACCEPT with is passed on as
// that errno, not refused as a malformed reply; one above it is.
func TestParseAcceptReplyErrnoBound(t *testing.T) {
	const fam, seq = 0x1c, 7
	_, done, err := parseAcceptReply(errMsg(syscall.Errno(maxErrno), seq), fam, seq, false)
	if !done || !errors.Is(err, syscall.Errno(maxErrno)) || errors.Is(err, ErrBadReply) {
		t.Errorf("errno %d: done %v, err %v; want the errno itself", maxErrno, done, err)
	}
	_, done, err = parseAcceptReply(errMsg(syscall.Errno(maxErrno+1), seq), fam, seq, false)
	if !done || !errors.Is(err, ErrBadReply) {
		t.Errorf("errno %d: done %v, err %v; want ErrBadReply", maxErrno+1, done, err)
	}
}

// scanSockFD steps over empty attributes (length 4, just the header) to
// the SOCKFD behind them.
func TestScanSockFDEmptyAttribute(t *testing.T) {
	if fd := scanSockFD(cat(attr(acceptPeername, nil), attr(acceptSockFD, s32(5)))); fd != 5 {
		t.Errorf("scanSockFD = %d, want 5", fd)
	}
}
