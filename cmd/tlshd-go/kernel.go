package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/rekey"
)

// toKernel hands a finished connection to kTLS, as the daemon does for
// kernel consumers, and returns a connection whose records the kernel
// protects. The socket must have been read only up to the handshake's last
// record (tls13.Conn and stdtls guarantee it).
func toKernel(raw net.Conn, s *tls13.Session) (*kernelConn, error) {
	defer s.Zero()
	f, err := raw.(*net.TCPConn).File() // a blocking duplicate
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	tx, rx := rekey.SessionKeys(s)
	defer tx.Zero()
	defer rx.Zero()
	if err := ktls.Install(fd, tx, rx, ktls.Options{}); err != nil {
		f.Close()
		return nil, err
	}
	return &kernelConn{Conn: rekey.New(rekey.KTLS{FD: fd}, s), f: f}, nil
}

// kernelConn is a kTLS connection; CloseWrite sends close_notify.
type kernelConn struct {
	*rekey.Conn
	f *os.File
}

func (k *kernelConn) CloseWrite() error { return k.Conn.Close() }

// Close sends close_notify (unless CloseWrite did) and closes the
// socket.
func (k *kernelConn) Close() error {
	k.Conn.Close()
	k.Conn.Zero()
	return k.f.Close()
}

// updater sends a KeyUpdate after every limit bytes written.
type updater struct {
	halfCloser
	update  func() error
	limit   int
	mu      sync.Mutex
	written int
	count   int
}

func withKeyUpdates(c halfCloser, update func() error, limit int) halfCloser {
	if limit <= 0 {
		return c
	}
	return &updater{halfCloser: c, update: update, limit: limit}
}

func (u *updater) Write(p []byte) (int, error) {
	n, err := u.halfCloser.Write(p)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.written += n
	for err == nil && u.written >= u.limit {
		u.written -= u.limit
		if err = u.update(); err != nil {
			err = fmt.Errorf("key update: %w", err)
		}
		u.count++
	}
	return n, err
}

var _ io.Writer = (*updater)(nil)
