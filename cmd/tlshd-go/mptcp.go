package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
)

// mptcpFlag is --mptcp for connect and serve: MPTCP sockets (Go's
// SetMultipathTCP), whether the connection really is MPTCP in the summary
// lines, its subflows when it ends, and with --ktls the kernel's verdict
// on kTLS over MPTCP before the handshake is spent.
type mptcpFlag struct{ on bool }

func newMPTCPFlag(fs *flag.FlagSet) *mptcpFlag {
	m := &mptcpFlag{}
	fs.BoolVar(&m.on, "mptcp", false, "Multipath TCP: the summary says whether the connection is MPTCP or fell back to TCP, and counts its subflows (MPTCP_INFO)")
	return m
}

// dial connects to addr, over MPTCP with --mptcp. With kernelTLS too it
// refuses, before any handshake byte, a connection that cannot take kTLS
// (see prepare).
func (m *mptcpFlag) dial(ctx context.Context, addr string, kernelTLS bool) (net.Conn, error) {
	var d net.Dialer
	if m.on {
		d.SetMultipathTCP(true)
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := m.prepare(c, kernelTLS); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// listen listens on addr, for MPTCP with --mptcp (and Go's default,
// which accepts MPTCP too since Go 1.24, without it).
func (m *mptcpFlag) listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	if m.on {
		lc.SetMultipathTCP(true)
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// prepare does for an MPTCP connection what the daemon does for a kernel
// consumer's MPTCP socket when kTLS is wanted: it refuses one that fell
// back to TCP and attaches the TLS ULP now, so a kernel without kTLS on
// MPTCP says so before the handshake (toKernel's Install then finds the
// ULP attached, which it tolerates).
func (m *mptcpFlag) prepare(c net.Conn, kernelTLS bool) error {
	if !m.on || !kernelTLS {
		return nil
	}
	return withFD(c, func(fd int) error {
		if p, err := ktls.Protocol(fd); err != nil || p != unix.IPPROTO_MPTCP {
			return err // Go made a TCP socket: kTLS as usual
		}
		fb, err := ktls.MPTCPFallback(fd)
		if err != nil {
			return err
		}
		if fb {
			return errors.New("--ktls: the MPTCP connection fell back to plain TCP, and kTLS on MPTCP needs one that did not (drop --mptcp or --ktls)")
		}
		if err := ktls.AttachULP(fd); err != nil {
			if errors.Is(err, ktls.ErrULPUnsupported) {
				return fmt.Errorf("--ktls: this kernel lacks kTLS on MPTCP sockets (the MPTCP kTLS series is not merged; %v); without --ktls the record layer stays in userspace", err)
			}
			return fmt.Errorf("--ktls: %w", err)
		}
		return nil
	})
}

// withFD runs f on the connection's socket.
func withFD(c net.Conn, f func(fd int) error) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// mptcpState is what MPTCP_INFO says of a connection: subflows (all
// of them) if it is MPTCP; an error wrapping ktls.ErrMPTCPFallback or
// ktls.ErrNotMPTCP otherwise.
func mptcpState(c net.Conn) (ktls.MPTCPInfo, error) {
	var info ktls.MPTCPInfo
	err := withFD(c, func(fd int) error {
		var err error
		info, err = ktls.ReadMPTCPInfo(fd)
		return err
	})
	return info, err
}

// describeMPTCP words a state for a summary line.
func describeMPTCP(info ktls.MPTCPInfo, err error) string {
	switch {
	case errors.Is(err, ktls.ErrMPTCPFallback):
		return "MPTCP fell back to TCP"
	case errors.Is(err, ktls.ErrNotMPTCP):
		return "plain TCP: no MPTCP socket"
	case err != nil:
		return "MPTCP state unknown: " + err.Error()
	case info.SubflowsTotal > 1:
		return fmt.Sprintf("MPTCP, multipath: %d subflows", info.SubflowsTotal)
	}
	return fmt.Sprintf("MPTCP, %d subflow so far", info.SubflowsTotal)
}

// note is the summary line's addition: "" without --mptcp.
func (m *mptcpFlag) note(c net.Conn) string {
	if !m.on {
		return ""
	}
	return " (" + describeMPTCP(mptcpState(c)) + ")"
}

// mptcpWatch samples a connection's subflows while it lives: subflows
// join after the handshake, and may go with a lost path.
type mptcpWatch struct {
	c    net.Conn
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	first      ktls.MPTCPInfo
	firstErr   error
	max, last  uint8
	sampled    bool
	fellBackAt time.Duration // set if the connection fell back mid-way
	start      time.Time
}

// mptcpSampleEvery bounds how long a subflow can come and go unseen.
const mptcpSampleEvery = 50 * time.Millisecond

// watch starts sampling c; nil without --mptcp (report is then a no-op).
func (m *mptcpFlag) watch(c net.Conn) *mptcpWatch {
	if !m.on {
		return nil
	}
	w := &mptcpWatch{c: c, stop: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	w.first, w.firstErr = mptcpState(c)
	w.record(w.first, w.firstErr)
	go w.run()
	return w
}

func (w *mptcpWatch) run() {
	defer close(w.done)
	t := time.NewTicker(mptcpSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.record(mptcpState(w.c))
		}
	}
}

func (w *mptcpWatch) record(info ktls.MPTCPInfo, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(err, ktls.ErrMPTCPFallback) && w.firstErr == nil && w.fellBackAt == 0 {
		w.fellBackAt = time.Since(w.start)
	}
	if err != nil {
		return // closed, or not MPTCP: keep what was seen
	}
	if info.SubflowsTotal == 0 {
		return // closing: its subflows are gone
	}
	w.max, w.last, w.sampled = max(w.max, info.SubflowsTotal), info.SubflowsTotal, true
}

// report stops sampling and prints one line about the connection's
// subflows, prefixed with what.
func (w *mptcpWatch) report(out io.Writer, what string) {
	if w == nil {
		return
	}
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.firstErr != nil:
		fmt.Fprintf(out, "%s: %s\n", what, describeMPTCP(w.first, w.firstErr))
	case w.fellBackAt != 0:
		fmt.Fprintf(out, "%s: MPTCP fell back to TCP %v in, after %d subflows at most\n", what, w.fellBackAt.Round(time.Millisecond), w.max)
	case w.sampled:
		kind := "MPTCP, single path"
		if w.max > 1 {
			kind = "MPTCP, multipath"
		}
		fmt.Fprintf(out, "%s: %s: subflows %d at the handshake, %d at most, %d when last seen (MPTCP_INFO)\n",
			what, kind, w.first.SubflowsTotal, w.max, w.last)
	}
}
