// Package systemd holds what tlshd-go needs from the service manager: the
// sd_notify(3) protocol, written from its documentation, the unit file
// (tlshd-go.service, beside this file) and the --version line that
// scripts written for ktls-utils' tlshd parse.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// A Notifier sends state changes to the service manager. The zero value
// and a nil *Notifier are disabled: every method does nothing and reports
// nothing sent. A Notifier is safe for concurrent use.
type Notifier struct {
	addr *net.UnixAddr // nil: disabled
}

// ErrUnsupportedSocket is returned for NOTIFY_SOCKET values that are
// neither a path nor an abstract socket name (e.g. systemd 254's
// "vsock:" addresses, which only matter inside virtual machines).
var ErrUnsupportedSocket = errors.New("systemd: unsupported NOTIFY_SOCKET address")

// FromEnv returns a Notifier for $NOTIFY_SOCKET; without it, a disabled
// one. The variable is left set: the daemon starts no children.
func FromEnv() (*Notifier, error) {
	return NewNotifier(os.Getenv("NOTIFY_SOCKET"))
}

// NewNotifier returns a Notifier for a NOTIFY_SOCKET value: an absolute
// path, or "@name" for a socket in the abstract namespace. An empty value
// gives a disabled Notifier.
func NewNotifier(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return &Notifier{}, nil
	case socket[0] == '/' || socket[0] == '@' && len(socket) > 1:
		// For "@name" the net package puts a NUL in sun_path[0], which
		// is how the abstract namespace is addressed.
		return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedSocket, socket)
}

// Enabled reports whether the Notifier has a socket to send to.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends state, newline-separated VARIABLE=value assignments, in
// one datagram. It reports whether a message was sent; without a socket
// it sends nothing and returns false, nil.
func (n *Notifier) Notify(state string) (sent bool, err error) {
	if !n.Enabled() {
		return false, nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return false, fmt.Errorf("systemd: notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("systemd: notify: %w", err)
	}
	return true, nil
}

func (n *Notifier) send(state string) error {
	_, err := n.Notify(state)
	return err
}

// Ready tells the service manager that start-up, or a reload, is
// complete: send it once the daemon listens for handshake requests.
func (n *Notifier) Ready() error { return n.send("READY=1") }

// Reloading tells the service manager that a reload (SIGHUP) has begun;
// send Ready when it is done. The message carries MONOTONIC_USEC, which
// Type=notify-reload (systemd ≥ 253) requires and older versions ignore.
func (n *Notifier) Reloading() error {
	if !n.Enabled() {
		return nil
	}
	us, err := monotonicUsec()
	if err != nil {
		return fmt.Errorf("systemd: reading CLOCK_MONOTONIC: %w", err)
	}
	return n.send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatUint(us, 10))
}

// Stopping tells the service manager that the daemon is shutting down.
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Status sets the one-line status shown by systemctl status. Newlines
// become spaces.
func (n *Notifier) Status(s string) error {
	return n.send("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s))
}

// Watchdog sends a keep-alive ping (WATCHDOG=1).
func (n *Notifier) Watchdog() error { return n.send("WATCHDOG=1") }

// WatchdogInterval returns how often the service manager expects a
// Watchdog ping, from $WATCHDOG_USEC and $WATCHDOG_PID; ok is false when
// no watchdog is configured for this process. Ping at half the interval.
func WatchdogInterval() (d time.Duration, ok bool) {
	us, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || us == 0 {
		return 0, false
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}
