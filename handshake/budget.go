package handshake

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Two budgets bound the handshakes in flight, so that peers which connect
// and then say nothing (or trickle a byte at a time) cannot starve the
// ones that make progress:
//
//   - work slots, max_concurrent of them, are held while a handshake
//     computes: policy, keyrings, key exchange, signatures, kTLS, DONE.
//     A handshake gives its slot back whenever it blocks on the peer (see
//     peerConn) and takes one again when the peer has answered;
//   - peer slots bound the handshakes started and not yet finished,
//     working or waiting on their peers. Each holds file descriptors, so
//     the bound derives from RLIMIT_NOFILE (peerLimit).
//
// A silent peer thus holds one peer slot and no work slot, for at most
// first_flight_timeout.
type slots chan struct{}

func newSlots(n int) slots { return make(slots, n) }

// acquire takes a slot, or fails with ctx's cause once ctx ends.
func (s slots) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	default:
	}
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s slots) release() { <-s }

const (
	// fdsPerHandshake: a started handshake holds the fd ACCEPT
	// installed, and no other (openSocket polls that one).
	fdsPerHandshake = 1
	// fdReserve: descriptors kept for everything else the daemon opens
	// (netlink sockets, certificate files, the TPM, sd_notify, the log).
	fdReserve = 64
	// maxPeerFactor caps peer slots at this many times max_concurrent,
	// whatever the fd limit: enough for hundreds of silent peers per
	// work slot at the default first_flight_timeout.
	maxPeerFactor = 64
)

// peerLimit is how many handshakes may be started at once: what the file
// descriptor limit leaves after the reserve and the queue (one fd per
// queued request), at fdsPerHandshake each, capped at maxPeerFactor ×
// work, and never fewer than work.
func peerLimit(work, queue int, nofile uint64) int {
	avail := int64(min(nofile, 1<<30)) - fdReserve - int64(queue)
	n := int(max(avail, 0) / fdsPerHandshake)
	return max(min(n, maxPeerFactor*work), work)
}

// noFileLimit is the soft RLIMIT_NOFILE (Go raises it to the hard limit
// at start), or 1024 if it cannot be read.
func noFileLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return rl.Cur
}

// peerConn is the handshake's view of the kernel's socket. It gives the
// request's work slot back while blocked in Read or Write, and enforces
// the first-flight deadline: until the peer's first handshake message (a
// ClientHello for a server, a ServerHello for a client) has arrived
// whole, reads end at firstBy at the latest, whatever deadline the engine
// sets. The engines do their I/O from one goroutine, so Read and Write
// never overlap.
type peerConn struct {
	net.Conn
	work  slots
	first string        // the message awaited, for the error
	after time.Duration // first_flight_timeout, for the error

	mu       sync.Mutex
	deadline time.Time // the read deadline the engine asked for
	firstBy  time.Time // zero once the first message is complete
	scan     firstMessage
}

// newPeerConn wraps c for a request holding a work slot from work. A
// timeout of 0 sets no first-flight deadline.
func newPeerConn(c net.Conn, work slots, first string, timeout time.Duration) *peerConn {
	p := &peerConn{Conn: c, work: work, first: first, after: timeout}
	if timeout > 0 {
		p.firstBy = time.Now().Add(timeout)
		c.SetReadDeadline(p.firstBy)
	}
	return p
}

// readDeadline is the deadline reads run under: the engine's, or the
// first-flight deadline while that is pending and earlier. Callers hold
// p.mu.
func (p *peerConn) readDeadline() time.Time {
	if p.firstBy.IsZero() || !p.deadline.IsZero() && p.deadline.Before(p.firstBy) {
		return p.deadline
	}
	return p.firstBy
}

func (p *peerConn) SetDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deadline = t
	if err := p.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return p.Conn.SetReadDeadline(p.readDeadline())
}

func (p *peerConn) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deadline = t
	return p.Conn.SetReadDeadline(p.readDeadline())
}

func (p *peerConn) Read(b []byte) (int, error) {
	p.work.release()
	n, err := p.Conn.Read(b)
	p.work.acquire(context.Background())

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstBy.IsZero() {
		return n, err
	}
	if p.scan.feed(b[:n]) {
		p.firstBy = time.Time{}
		p.Conn.SetReadDeadline(p.deadline)
		return n, err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(p.firstBy) && p.readDeadline().Equal(p.firstBy) {
		err = &firstFlightError{what: p.first, after: p.after, err: err}
	}
	return n, err
}

func (p *peerConn) Write(b []byte) (int, error) {
	p.work.release()
	defer p.work.acquire(context.Background())
	return p.Conn.Write(b)
}

// firstFlightError: the peer's first message did not arrive in time. It
// is a timeout (net.Error) wrapping os.ErrDeadlineExceeded, so the engines
// treat it as one and DONE reports ETIMEDOUT.
type firstFlightError struct {
	what  string
	after time.Duration
	err   error
}

func (e *firstFlightError) Error() string {
	return fmt.Sprintf("no complete %s from the peer within first_flight_timeout (%v)", e.what, e.after)
}
func (e *firstFlightError) Unwrap() error   { return e.err }
func (e *firstFlightError) Timeout() bool   { return true }
func (e *firstFlightError) Temporary() bool { return false }

// firstMessage follows the TLS record framing of what the peer sends
// until its first handshake message has arrived whole. It only frames;
// the engine judges the content. Records of other types (an alert, a
// stray change_cipher_spec) are skipped: they do not count as a first
// flight.
type firstMessage struct {
	hdr  [5]byte // record header being read
	nhdr int
	left int     // bytes of the current record's body still to come
	typ  byte    // the current record's content type
	msg  [4]byte // handshake message header
	nmsg int
	need int // handshake body bytes still to come, once nmsg == 4
	done bool
}

const recordTypeHandshake = 22

// feed takes the next bytes read and reports whether the first message
// is complete.
func (f *firstMessage) feed(b []byte) bool {
	for len(b) > 0 && !f.done {
		if f.left == 0 {
			k := copy(f.hdr[f.nhdr:], b)
			f.nhdr += k
			b = b[k:]
			if f.nhdr < len(f.hdr) {
				break
			}
			f.nhdr = 0
			f.typ = f.hdr[0]
			f.left = int(binary.BigEndian.Uint16(f.hdr[3:5]))
			continue
		}
		k := min(f.left, len(b))
		chunk := b[:k]
		b = b[k:]
		f.left -= k
		if f.typ != recordTypeHandshake {
			continue
		}
		if f.nmsg < len(f.msg) {
			c := copy(f.msg[f.nmsg:], chunk)
			f.nmsg += c
			chunk = chunk[c:]
			if f.nmsg < len(f.msg) {
				continue
			}
			f.need = int(f.msg[1])<<16 | int(f.msg[2])<<8 | int(f.msg[3])
		}
		f.need -= len(chunk)
		if f.need <= 0 {
			f.done = true
		}
	}
	return f.done
}
