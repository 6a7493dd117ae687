package stdtls

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/tlsrecord"
)

const (
	recordHeaderLen = tlsrecord.HeaderLen

	recordTypeChangeCipherSpec = tlsrecord.TypeChangeCipherSpec
	recordTypeAlert            = tlsrecord.TypeAlert
	recordTypeHandshake        = tlsrecord.TypeHandshake
	recordTypeApplicationData  = tlsrecord.TypeApplicationData

	// An encrypted alert is 2 bytes of alert, 1 of inner type and a
	// 16-byte tag; keep a little room for padding peers.
	maxTrackedRecord = 64
)

// recordConn is the net.Conn crypto/tls sees. Its Read never crosses a
// TLS record boundary: it returns at most the rest of the current 5-byte
// header, then at most the rest of that record's body. crypto/tls copes
// with short reads, and so stops reading exactly after the last record the
// handshake needs: whatever the peer sent next (application data,
// NewSessionTicket, KeyUpdate) stays in the socket for kTLS.
//
// Writes go through unchanged; recordConn only notes the shape of what
// was written, so that a failed handshake can tell which alert crypto/tls
// sent (see sentAlert).
//
// Close does not close the socket, which belongs to the caller: it makes
// pending and future I/O fail by setting a deadline in the past. That is
// how crypto/tls's HandshakeContext interrupts a handshake when its
// context ends.
type recordConn struct {
	net.Conn

	// Read side; only crypto/tls's reader touches it.
	rhdr     [recordHeaderLen]byte
	rhdrLen  int // header bytes of the current record read so far
	rbodyLen int // body bytes of the current record still to read

	// Write side; crypto/tls serialises writes, and the tracker is read
	// only after the handshake has returned.
	w writeTracker

	// Close interrupts I/O instead of closing: the socket goes to kTLS.
	// crypto/tls calls it from a context.AfterFunc that the handshake
	// does not wait for, so settle fences it off before the deadline is
	// cleared.
	closeMu sync.Mutex
	settled bool
}

func newRecordConn(c net.Conn) *recordConn {
	return &recordConn{Conn: c}
}

func (c *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.rbodyLen > 0 {
		n, err := c.Conn.Read(p[:min(len(p), c.rbodyLen)])
		c.rbodyLen -= n
		return n, err
	}
	n, err := c.Conn.Read(p[:min(len(p), recordHeaderLen-c.rhdrLen)])
	copy(c.rhdr[c.rhdrLen:], p[:n])
	c.rhdrLen += n
	if c.rhdrLen == recordHeaderLen {
		c.rbodyLen = int(binary.BigEndian.Uint16(c.rhdr[3:5]))
		c.rhdrLen = 0
	}
	return n, err
}

func (c *recordConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.track(p[:n])
	return n, err
}

// aLongTimeAgo is a non-zero time far in the past, for interrupting I/O.
var aLongTimeAgo = time.Unix(1, 0)

func (c *recordConn) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if !c.settled {
		c.Conn.SetDeadline(aLongTimeAgo)
	}
	return nil
}

// settle ends the handshake's hold on the socket: a Close still to come
// does nothing, one under way has finished, and no deadline is left.
func (c *recordConn) settle() {
	c.closeMu.Lock()
	c.settled = true
	c.closeMu.Unlock()
	c.Conn.SetDeadline(time.Time{})
}

// writeTracker follows the record framing of the bytes written and keeps
// the last record if it is small, which is where an alert would be.
type writeTracker struct {
	hdr     [recordHeaderLen]byte
	hdrLen  int
	bodyLen int // body bytes of the current record still to come

	// encrypted counts the records written with outer type
	// application_data (all protected records in TLS 1.3), including the
	// current one.
	encrypted int

	// The current (or last) record, if it fits.
	last     [recordHeaderLen + maxTrackedRecord]byte
	lastLen  int  // bytes of last filled so far
	lastKeep bool // the current record fits in last
	overflow bool // framing lost (a record too long to be TLS)
}

func (w *writeTracker) track(p []byte) {
	for len(p) > 0 && !w.overflow {
		if w.bodyLen == 0 {
			// In a header.
			n := copy(w.hdr[w.hdrLen:], p)
			w.hdrLen += n
			p = p[n:]
			if w.hdrLen < recordHeaderLen {
				return
			}
			w.hdrLen = 0
			w.bodyLen = int(binary.BigEndian.Uint16(w.hdr[3:5]))
			if w.bodyLen > 1<<14+256 {
				w.overflow = true
				return
			}
			if w.hdr[0] == recordTypeApplicationData {
				w.encrypted++
			}
			w.lastKeep = w.bodyLen <= maxTrackedRecord
			w.lastLen = copy(w.last[:], w.hdr[:])
			if w.bodyLen == 0 {
				continue
			}
		}
		n := min(len(p), w.bodyLen)
		if w.lastKeep {
			w.lastLen += copy(w.last[w.lastLen:], p[:n])
		}
		w.bodyLen -= n
		p = p[n:]
	}
}

// lastRecord returns the last complete record written, header included,
// if it was small enough to keep, and how many protected records had
// been written up to and including it.
func (w *writeTracker) lastRecord() (rec []byte, encrypted int, ok bool) {
	if w.overflow || w.hdrLen != 0 || w.bodyLen != 0 || !w.lastKeep || w.lastLen < recordHeaderLen {
		return nil, 0, false
	}
	return w.last[:w.lastLen], w.encrypted, true
}
