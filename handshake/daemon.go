// Package handshake serves the kernel's TLS handshake requests: for each
// one it applies the policy, finds the credentials, runs the handshake on
// the socket the kernel handed over, installs the traffic keys into kTLS
// and reports the result with DONE.
//
// Its dependencies are interfaces (Kernel, Notifier, Keyring, Installer)
// so tests can swap the kernel, the keyring and kTLS; cmd/tlshd-go wires
// the real ones.
package handshake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
)

// Kernel is the net/handshake request side: genl.Conn in production.
type Kernel interface {
	// Accept takes the oldest pending request, or fails with an error
	// wrapping genl.ErrNoRequest. The daemon calls it only on the accept
	// thread: the kernel links the consumer's keyring into the calling
	// thread's process keyring, which the key thread has linked.
	Accept() (genl.Request, error)
	// Done reports a result; it must be sent before the fd is closed.
	Done(genl.Done) error
}

// Notifier delivers READY notifications: genl.Listener in production.
// Wait returns nil on READY and an error wrapping genl.ErrOverrun when
// notifications were lost; either way the daemon sweeps with ACCEPT.
type Notifier interface {
	Wait(ctx context.Context) error
}

// Keyring is the kernel keyring as a request sees it. Share runs on the
// accept thread, every other method on the key thread (a locked OS thread
// whose keyrings make the keys possessed).
type Keyring interface {
	// Attach makes the keyrings a request needs (the policy's, and the
	// consumer's from the ACCEPT reply, 0 if absent) reachable from the
	// key thread, so that their keys are possessed and readable. It returns
	// their serials, the keyrings the request may search; detach undoes
	// it.
	Attach(rings []config.Keyring, requestRing int32) (attached []int32, detach func(), err error)
	// ReadPSK reads a PSK by serial: its description (the identity) and
	// payload.
	ReadPSK(serial int32) (identity string, key []byte, err error)
	// SearchPSK finds the PSK whose description is identity in the
	// given keyrings (those Attach returned), in order; not found is an
	// error wrapping keyring.ErrNotFound. It must search nothing else:
	// the key thread also reaches every keyring other consumers handed
	// over, and a target must not accept a key from a host's own keyring.
	SearchPSK(rings []int32, identity string) (serial int32, key []byte, err error)
	// Read returns a key's payload (DER certificates and private keys).
	Read(serial int32) ([]byte, error)
	// Share runs on the thread that sends ACCEPT: it makes that thread's
	// process keyring, into which the kernel links each consumer's
	// keyring, linkable by the thread that reads keys, and returns its
	// serial (0 if there is nothing to share).
	Share() (int32, error)
}

// Installer puts traffic keys into kTLS: ktls.Install in production.
type Installer interface {
	Install(fd int, tx, rx ktls.Keys, o ktls.Options) error
}

// A Daemon serves handshake requests until its context ends.
type Daemon struct {
	Kernel    Kernel
	Ready     Notifier
	Keyring   Keyring
	Installer Installer
	// Policy returns the policy a new request runs under; a reload swaps
	// what it returns, and requests in flight keep the one they started
	// with.
	Policy func() *config.Policy
	Log    *slog.Logger
	// KeyLog, if set, receives every handshake's traffic secrets in NSS
	// key log format (SSLKEYLOGFILE): debugging only. wire.go.
	KeyLog io.Writer
	// LookupAddr, if set, names a server the kernel gave only by address
	// (reverse DNS, for x509 clients; sni.go). nil: no lookup.
	LookupAddr func(ctx context.Context, addr string) ([]string, error)
	// OpenTPMKey opens a private key file in TPM form ("TSS2 PRIVATE
	// KEY" PEM) as a signer whose key stays in the TPM; nil means no TPM.
	OpenTPMKey certs.KeyOpener
	// Now is the clock for certificate checks; nil means time.Now.
	Now func() time.Time
	// Events, if set, is called once for every DONE sent, on the
	// goroutine that sent it; it must not block.
	Events func(Event)
	// KeyUpdates, if set, keeps sessions for the proposed KeyUpdate
	// upcalls (keyupdate.go); nil answers them ENOKEY.
	KeyUpdates *KeyUpdates

	// Counters for Stats.
	mu       sync.Mutex
	queued   int
	inflight int
	served   uint64
	failed   uint64
}

// Stats is a snapshot for status lines (sd_notify STATUS=).
type Stats struct {
	InFlight       int // handshakes running
	Queued         int // accepted, waiting for a worker
	Served, Failed uint64
}

// Stats returns the current counters.
func (d *Daemon) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{InFlight: d.inflight, Queued: d.queued, Served: d.served, Failed: d.failed}
}

// Run serves requests until ctx is cancelled, then waits for the
// handshakes in flight.
//
// The kernel links a consumer's keyring into the process keyring of the
// thread that sends ACCEPT, and keyrings are per-thread credentials. Two
// goroutines are locked to OS threads of their own: the accept thread
// waits for READY and sends ACCEPT right away, with nothing in between
// (the kernel keeps only a few requests pending per network namespace and
// refuses more with EAGAIN); the key thread makes every keyctl call, with
// the accept thread's process keyring linked into its own keyrings.
// Handshakes run on ordinary goroutines, at most max_concurrent at once;
// accepted requests wait in a bounded queue for one.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Kernel == nil || d.Ready == nil || d.Keyring == nil || d.Installer == nil || d.Policy == nil {
		return errors.New("handshake: Daemon needs Kernel, Ready, Keyring, Installer and Policy")
	}
	kt, at := startThread(), startThread()
	defer kt.stop()
	defer at.stop()
	keys := &threadKeyring{t: kt, k: d.Keyring}
	var shared int32
	var err error
	at.do(func() { shared, err = d.Keyring.Share() })
	if err != nil {
		d.log().Warn("sharing the accept thread's keyring; keys in a consumer's own keyring may be unreadable", "err", err)
	}
	if shared != 0 {
		// Linked for good: every request may need it.
		if _, _, err := keys.Attach([]config.Keyring{{Serial: shared}}, 0); err != nil {
			d.log().Warn("linking the accept thread's keyring", "err", err)
		}
	}

	// The bound is read once: a reload does not resize it. A goroutine
	// per handshake, started when a slot is free: nothing idles.
	limit := max(1, d.Policy().Global().MaxConcurrent)
	queue := make(chan accepted, queueFactor*limit)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		slots := make(chan struct{}, limit)
		for a := range queue {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				d.serveAccepted(ctx, keys, a)
			}()
		}
	}()
	at.do(func() {
		if p := raiseAcceptPriority(); p != "" {
			d.log().Debug("accept thread priority raised", "to", p)
		}
		d.acceptLoop(ctx, queue)
	})
	close(queue)
	wg.Wait()
	return nil
}

const (
	// queueFactor: requests accepted beyond max_concurrent wait in a
	// queue this many times as long; past that, they stay pending in the
	// kernel.
	queueFactor = 4
	// hotPoll: after finding requests, the accept thread looks again this
	// soon even without READY: a burst's notifications lag behind its
	// submits.
	hotPoll = 10 * time.Millisecond
)

// raiseAcceptPriority lets the calling thread (the accept thread) run
// before the kernel workers that keep submitting during a burst: it
// sleeps until READY and then only sends ACCEPT, and every request it
// leaves pending counts against the kernel's small cap. It asks for nice
// -10 (root, CAP_SYS_NICE or RLIMIT_NICE), else leaves the thread as it
// is, and returns what it got. RESET_ON_FORK keeps threads cloned from it
// (Go starts new ones from a template thread anyway) at the default.
// SCHED_FIFO was measured in the VM's reset storm and refused no fewer
// submits, so the thread stays out of the real-time classes.
func raiseAcceptPriority() string {
	nice := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: -10, Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	if unix.SchedSetAttr(0, &nice, 0) == nil {
		return "nice -10"
	}
	return ""
}

// accepted is a request taken from the kernel and when.
type accepted struct {
	req genl.Request
	err error // a reply that did not decode (req.FD is still ours)
	at  time.Time
}

// acceptLoop runs on the accept thread until ctx ends: it sweeps pending
// requests at start (READY is not repeated for requests queued before we
// listened), after every READY, after lost notifications, and while
// requests keep coming.
func (d *Daemon) acceptLoop(ctx context.Context, queue chan<- accepted) {
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		n := d.acceptAll(ctx, queue)
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if n > 0 {
			wctx, cancel = context.WithTimeout(ctx, hotPoll)
		}
		err := d.Ready.Wait(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil || errors.Is(err, context.DeadlineExceeded):
			backoff = 10 * time.Millisecond
		case errors.Is(err, genl.ErrOverrun):
			d.log().Warn("READY notifications lost; sweeping pending requests", "err", err)
		default:
			d.log().Error("waiting for READY", "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// acceptAll sends ACCEPT until nothing is pending and returns how many
// requests it took.
func (d *Daemon) acceptAll(ctx context.Context, queue chan<- accepted) (n int) {
	for ; ctx.Err() == nil; n++ {
		var a accepted
		a.req, a.err = d.Kernel.Accept()
		a.at = time.Now()
		if a.err != nil && a.req.FD < 0 {
			if !errors.Is(a.err, genl.ErrNoRequest) {
				d.log().Error("ACCEPT failed", "err", a.err)
			}
			return n
		}
		d.mu.Lock()
		d.queued++
		d.mu.Unlock()
		select {
		case queue <- a:
		case <-ctx.Done():
			// Shutting down: answer it now rather than leave it hanging.
			d.finish(&request{Request: a.req, accepted: a.at}, result{}, fmt.Errorf("shutting down: %w", context.Canceled))
			d.mu.Lock()
			d.queued--
			d.mu.Unlock()
			return n + 1
		}
	}
	return n
}

// serveAccepted runs one queued request.
func (d *Daemon) serveAccepted(ctx context.Context, keys keyThread, a accepted) {
	d.mu.Lock()
	d.queued--
	d.inflight++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.inflight--
		d.mu.Unlock()
	}()
	r := &request{Request: a.req, accepted: a.at, keys: keys, policy: d.Policy()}
	if a.err != nil {
		// The kernel installed the fd but the reply did not decode.
		d.finish(r, result{}, fmt.Errorf("decoding ACCEPT reply: %w", a.err))
		return
	}
	d.serve(ctx, r)
}
