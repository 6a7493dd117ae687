package handshake

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// TestPeerConnSetDeadline: the deadline the engine sets with SetDeadline
// bounds reads too, the first-flight deadline included when it is earlier
// (a silent peer then ends with the engine's deadline, not the
// first-flight error).
func TestPeerConnSetDeadline(t *testing.T) {
	for _, firstFlight := range []time.Duration{0, time.Minute} {
		c, _ := testtool.TCPPair(t) // the peer never writes
		work := newSlots(1)
		if err := work.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		p := newPeerConn(c, work, "ClientHello", firstFlight)
		if err := p.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		read := make(chan error, 1)
		go func() {
			_, err := p.Read(make([]byte, 16))
			read <- err
		}()
		select {
		case err := <-read:
			var ff *firstFlightError
			if !errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ff) {
				t.Errorf("first flight %v: Read = %v, want the engine's deadline", firstFlight, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("first flight %v: Read still blocked 10 s after a 50 ms deadline", firstFlight)
		}
	}
}
