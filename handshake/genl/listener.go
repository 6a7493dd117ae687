package genl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A Listener receives READY notifications on its own socket, joined to
// the family's "tlshd" multicast group. The kernel refuses to queue
// handshake requests (ESRCH) while nobody listens, so a daemon listens
// before anything else.
type Listener struct {
	c  receiver
	mu sync.Mutex // one Wait at a time
}

// receiver is the part of *genetlink.Conn a Listener uses; tests replace
// it to exercise deadlines, which genltest connections do not support.
type receiver interface {
	Receive() ([]genetlink.Message, []netlink.Message, error)
	SetReadDeadline(time.Time) error
	Close() error
}

// Listen opens a generic netlink socket, resolves the family and joins
// its "tlshd" group.
func Listen() (*Listener, error) {
	gc, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("genl: opening generic netlink socket: %w", err)
	}
	l, err := listen(gc, joinGroup)
	if err != nil {
		gc.Close()
		return nil, err
	}
	return l, nil
}

// joinGroup is kept apart because genltest connections cannot join
// multicast groups.
func joinGroup(c *genetlink.Conn, id uint32) error { return c.JoinGroup(id) }

func listen(gc *genetlink.Conn, join func(*genetlink.Conn, uint32) error) (*Listener, error) {
	f, err := getFamily(gc)
	if err != nil {
		return nil, err
	}
	id, err := tlshdGroup(f)
	if err != nil {
		return nil, err
	}
	if err := join(gc, id); err != nil {
		return nil, fmt.Errorf("genl: joining multicast group %q (%d): %w", groupName, id, err)
	}
	return &Listener{c: gc}, nil
}

// tlshdGroup returns the ID of the "tlshd" group; IDs are dynamic and
// differ from the group's index within the family.
func tlshdGroup(f genetlink.Family) (uint32, error) {
	for _, g := range f.Groups {
		if g.Name == groupName {
			return g.ID, nil
		}
	}
	return 0, fmt.Errorf("genl: family %q has no multicast group %q", f.Name, groupName)
}

// Wait blocks until a READY notification arrives and returns nil. It
// returns an error wrapping ErrOverrun if notifications were lost (the
// caller then sweeps as after a READY), ctx.Err() once ctx is done, and any
// other receive error wrapped. Messages other than READY are ignored.
//
// One READY may stand for several requests and requests may have been
// queued before the daemon started, so a caller always sweeps with
// Conn.Accept until ErrNoRequest after Wait returns nil.
func (l *Listener) Wait(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Clear a deadline left by an earlier cancelled Wait.
	if err := l.c.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("genl: clearing read deadline: %w", err)
	}
	unblocked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		l.c.SetReadDeadline(time.Unix(1, 0)) // in the past: Receive returns now
	})
	defer func() {
		if !stop() {
			<-unblocked // don't let the deadline land after we return
		}
	}()
	for {
		msgs, _, err := l.c.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, unix.ENOBUFS) {
				return fmt.Errorf("%w (%w)", ErrOverrun, err)
			}
			return fmt.Errorf("genl: receiving READY: %w", err)
		}
		for _, m := range msgs {
			if isReady(m) {
				return nil
			}
		}
	}
}

// isReady reports whether m is a READY for the tlshd handler class. The
// class is checked only if present: a spurious sweep costs one ACCEPT,
// a missed READY leaves a request to time out.
func isReady(m genetlink.Message) bool {
	if m.Header.Command != cmdReady {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return true
	}
	for ad.Next() {
		if ad.Type() == acceptHandlerClass {
			if c := ad.Uint32(); ad.Err() == nil && c != handlerClassTLSHD {
				return false
			}
		}
	}
	return true
}

// Close closes the socket; a blocked Wait returns an error.
func (l *Listener) Close() error { return l.c.Close() }
