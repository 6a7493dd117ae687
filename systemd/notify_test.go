package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a unixgram socket like the service manager's and returns
// its NOTIFY_SOCKET value and a function reading the next datagram.
func listen(t *testing.T, abstract bool) (string, func() string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		name = fmt.Sprintf("@tlshd-go-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return name, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := c.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("reading notification: %v", err)
		}
		return string(buf[:n])
	}
}

func TestNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprintf("abstract=%v", abstract), func(t *testing.T) {
			sock, recv := listen(t, abstract)
			n, err := NewNotifier(sock)
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("not enabled")
			}
			sent, err := n.Notify("READY=1\nSTATUS=custom")
			if err != nil || !sent {
				t.Fatalf("Notify = %v, %v", sent, err)
			}
			if got := recv(); got != "READY=1\nSTATUS=custom" {
				t.Errorf("got %q", got)
			}
			for _, tt := range []struct {
				call func() error
				want string
			}{
				{n.Ready, "READY=1"},
				{n.Stopping, "STOPPING=1"},
				{n.Watchdog, "WATCHDOG=1"},
				{func() error { return n.Status("3 handshakes\nin flight") }, "STATUS=3 handshakes in flight"},
			} {
				if err := tt.call(); err != nil {
					t.Fatal(err)
				}
				if got := recv(); got != tt.want {
					t.Errorf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestReloading(t *testing.T) {
	sock, recv := listen(t, false)
	n, err := NewNotifier(sock)
	if err != nil {
		t.Fatal(err)
	}
	before, err := monotonicUsec()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	after, _ := monotonicUsec()
	lines := strings.Split(recv(), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("got %q, want RELOADING=1 and MONOTONIC_USEC=", lines)
	}
	us, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if us < before || us > after {
		t.Errorf("MONOTONIC_USEC=%d outside [%d, %d]", us, before, after)
	}
}

func TestNotifyDisabled(t *testing.T) {
	for _, n := range []*Notifier{nil, {}, mustNotifier(t, "")} {
		if n.Enabled() {
			t.Error("enabled")
		}
		if sent, err := n.Notify("READY=1"); sent || err != nil {
			t.Errorf("Notify = %v, %v", sent, err)
		}
		for _, f := range []func() error{n.Ready, n.Reloading, n.Stopping, n.Watchdog, func() error { return n.Status("x") }} {
			if err := f(); err != nil {
				t.Error(err)
			}
		}
	}
}

func mustNotifier(t *testing.T, s string) *Notifier {
	t.Helper()
	n, err := NewNotifier(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFromEnv(t *testing.T) {
	sock, recv := listen(t, false)
	t.Setenv("NOTIFY_SOCKET", sock)
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(); got != "READY=1" {
		t.Errorf("got %q", got)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if n, err := FromEnv(); err != nil || n.Enabled() {
		t.Errorf("unset NOTIFY_SOCKET: %v, %v", n.Enabled(), err)
	}
}

func TestNotifyErrors(t *testing.T) {
	for _, bad := range []string{"relative/path", "@", "vsock:2:1234"} {
		if _, err := NewNotifier(bad); !errors.Is(err, ErrUnsupportedSocket) {
			t.Errorf("NewNotifier(%q) = %v, want ErrUnsupportedSocket", bad, err)
		}
	}
	n := mustNotifier(t, filepath.Join(t.TempDir(), "nobody-listens"))
	if sent, err := n.Notify("READY=1"); sent || err == nil {
		t.Errorf("Notify to a missing socket = %v, %v", sent, err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	if _, ok := WatchdogInterval(); ok {
		t.Error("watchdog without WATCHDOG_USEC")
	}
	t.Setenv("WATCHDOG_USEC", "30000000")
	if d, ok := WatchdogInterval(); !ok || d != 30*time.Second {
		t.Errorf("WatchdogInterval() = %v, %v", d, ok)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if _, ok := WatchdogInterval(); !ok {
		t.Error("watchdog for this pid not seen")
	}
	t.Setenv("WATCHDOG_PID", "1")
	if _, ok := WatchdogInterval(); ok {
		t.Error("watchdog for another pid accepted")
	}
}
