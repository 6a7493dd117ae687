package ktls

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"github.com/tlshd-go/tlshd-go/handshake/tlsrecord"
	"golang.org/x/sys/unix"
)

// Control messages at level SOL_TLS (include/uapi/linux/tls.h).
const (
	tlsSetRecordType = 1 // TLS_SET_RECORD_TYPE, sendmsg
	tlsGetRecordType = 2 // TLS_GET_RECORD_TYPE, recvmsg

	recordTypeApplicationData = tlsrecord.TypeApplicationData
)

// SendRecord sends data as one record of content type typ (21 alert, 22
// handshake, 23 application data) on a kTLS socket. The kernel closes the
// record at the end of the call, so a KeyUpdate or an alert goes out as a
// record of its own.
//
// A short write is completed by further records of the same type, which a
// TLS peer reassembles. The send is MSG_DONTWAIT with a poll for room
// (SendRecordBy), but kTLS reserves a record's buffer before it copies,
// so the small records sent here (KeyUpdate, alerts) go out whole or not
// at all.
func SendRecord(fd int, typ uint8, data []byte) error {
	return SendRecordBy(fd, typ, data, time.Time{})
}

// SendRecordBy is SendRecord that waits for room in the send buffer no
// later than deadline (the zero time: no limit), whether or not the
// socket is non-blocking: a peer that stopped reading, with the send
// buffer full, must not hold a request past its deadline. Past it the
// error wraps os.ErrDeadlineExceeded; nothing of the record was sent if
// the first attempt found no room.
func SendRecordBy(fd int, typ uint8, data []byte, deadline time.Time) error {
	if len(data) == 0 {
		// sendmsg on a stream socket with control data but no payload
		// would send a dummy byte (x/sys/unix).
		return errors.New("ktls: empty record")
	}
	oob := recordTypeCmsg(typ)
	for len(data) > 0 {
		n, err := unix.SendmsgN(fd, data, oob, nil, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			err = waitWritable(fd, deadline)
			if err == nil {
				continue
			}
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("ktls: sending record of type %d: %w", typ, err)
		}
		data = data[n:]
	}
	return nil
}

// waitWritable polls fd for room to write until deadline (zero: no
// limit); os.ErrDeadlineExceeded once it has passed.
func waitWritable(fd int, deadline time.Time) error {
	for {
		timeout := -1
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			timeout = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		_, err := unix.Poll(pfd, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if pfd[0].Revents != 0 || deadline.IsZero() {
			// Writable, or an error or hang-up that the next
			// sendmsg reports.
			return nil
		}
	}
}

// RecvRecord reads from one record on a kTLS socket into buf and returns
// the record's content type. The kernel never mixes record types in one
// read. Without a TLS_GET_RECORD_TYPE control message (a socket without
// kTLS), the type is 23, application data. At end of stream it returns
// io.EOF.
func RecvRecord(fd int, buf []byte) (typ uint8, n int, err error) {
	oob := make([]byte, unix.CmsgSpace(1))
	for {
		var oobn, flags int
		n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("ktls: receiving record: %w", err)
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return 0, 0, errors.New("ktls: receiving record: control message truncated")
		}
		typ, ok, err := parseRecordType(oob[:oobn])
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			if n == 0 && len(buf) > 0 {
				return 0, 0, io.EOF
			}
			typ = recordTypeApplicationData
		}
		return typ, n, nil
	}
}

// recordTypeCmsg returns a control message setting the record type.
func recordTypeCmsg(typ uint8) []byte {
	b := make([]byte, unix.CmsgSpace(1))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = solTLS
	h.Type = tlsSetRecordType
	h.SetLen(unix.CmsgLen(1))
	b[unix.CmsgLen(0)] = typ
	return b
}

// parseRecordType finds TLS_GET_RECORD_TYPE among control messages.
func parseRecordType(oob []byte) (typ uint8, ok bool, err error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false, fmt.Errorf("ktls: parsing control messages: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Level == solTLS && m.Header.Type == tlsGetRecordType {
			if len(m.Data) < 1 {
				return 0, false, errors.New("ktls: empty record type control message")
			}
			return m.Data[0], true, nil
		}
	}
	return 0, false, nil
}
