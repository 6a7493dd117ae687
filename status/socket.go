package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSocket is where the daemon listens: systemd creates /run/tlshd-go
// (RuntimeDirectory=, mode 0700) for it.
const DefaultSocket = "/run/tlshd-go/status.sock"

// Listen creates the status socket: its directory with mode 0700 if
// missing, the socket itself with mode 0600, replacing a stale one.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path) // a previous daemon's
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The directory already keeps others out; the mode says so again.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// A Server answers each connection on the status socket with one JSON
// Snapshot, then closes it.
type Server struct {
	Source *Source
	Log    *slog.Logger
	// Allow decides from the peer's credentials (SO_PEERCRED) whether it
	// may read the counters; nil means root or the daemon's own user.
	Allow func(*unix.Ucred) bool
}

// Serve accepts until ctx ends or l fails.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go s.answer(c)
	}
}

func (s *Server) answer(c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cred, err := peerCred(c)
	allow := s.Allow
	if allow == nil {
		allow = func(u *unix.Ucred) bool { return u.Uid == 0 || int(u.Uid) == os.Geteuid() }
	}
	if err != nil || !allow(cred) {
		if s.Log != nil {
			s.Log.Warn("status socket: refused a client", "cred", fmt.Sprintf("%+v", cred), "err", err)
		}
		fmt.Fprintln(c, `{"error":"permission denied"}`)
		return
	}
	json.NewEncoder(c).Encode(s.Source.Snapshot())
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// Fetch reads one Snapshot from the daemon's socket.
func Fetch(ctx context.Context, path string) (*Snapshot, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist: is the daemon running (systemctl status tlshd-go)?", path)
		}
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	snap, err := decodeReply(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return snap, nil
}

// decodeReply reads the daemon's one JSON reply: a Snapshot, or an error.
func decodeReply(r io.Reader) (*Snapshot, error) {
	var reply struct {
		Error string `json:"error"`
		Snapshot
	}
	if err := json.NewDecoder(io.LimitReader(r, maxReply)).Decode(&reply); err != nil {
		return nil, fmt.Errorf("reading the reply: %w", err)
	}
	if reply.Error != "" {
		return nil, errors.New(reply.Error)
	}
	return &reply.Snapshot, nil
}

// maxReply bounds a reply: a few hundred counters and certificates.
const maxReply = 1 << 20
