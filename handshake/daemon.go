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

	// Alive, if set, is called on the accept thread after every sweep:
	// proof that the accept loop turns (systemd's WATCHDOG=1). It must
	// not block.
	Alive func()
	// Sweep is how often the accept thread sweeps (ACCEPT until nothing
	// is pending) without READY, and calls Alive; 0 means
	// defaultSweep. The kernel never repeats a READY, so this bounds how
	// long a request can stay pending after a lost notification.
	Sweep time.Duration
	// PeerSlots bounds the handshakes started at once (working or
	// waiting on their peers); 0 derives it from RLIMIT_NOFILE (see
	// peerLimit).
	PeerSlots int

	// Counters for Stats.
	mu            sync.Mutex
	queued        int
	inflight      int
	served        uint64
	failed        uint64
	acceptRetries uint64
	badReplies    uint64
	panics        uint64
	work          slots // set by Run, for Stats
}

// Stats is a snapshot for status lines (sd_notify STATUS=).
type Stats struct {
	InFlight       int // handshakes started, working or waiting on their peers
	Working        int // of those, holding a work slot (max_concurrent at most)
	Queued         int // accepted, waiting for a peer slot
	Served, Failed uint64
	AcceptRetries  uint64 // ACCEPTs that failed for a passing reason (genl.ErrRetry) and were retried
	BadReplies     uint64 // ACCEPT replies that could not be used (genl.ErrBadReply)
	Panics         uint64 // panics recovered
}

// Stats returns the current counters.
func (d *Daemon) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{InFlight: d.inflight, Working: len(d.work), Queued: d.queued, Served: d.served, Failed: d.failed,
		AcceptRetries: d.acceptRetries, BadReplies: d.badReplies, Panics: d.panics}
}

// count adds one to a counter under d.mu.
func (d *Daemon) count(c *uint64) {
	d.mu.Lock()
	*c++
	d.mu.Unlock()
}

// errDraining ends the handshakes still running when the drain grace
// after SIGTERM is over; DONE reports ETIMEDOUT, which the consumers
// retry.
var errDraining = errors.New("the daemon is stopping (drain_timeout passed)")

// Run serves requests until ctx is cancelled, then drains: it takes no
// more requests, lets those accepted finish for the policy's
// drain_timeout, ends the rest with ETIMEDOUT, and returns when every
// one has had its DONE.
//
// The kernel links a consumer's keyring into the process keyring of the
// thread that sends ACCEPT, and keyrings are per-thread credentials. Two
// goroutines are locked to OS threads of their own: the accept thread
// waits for READY and sends ACCEPT right away, with nothing in between
// (the kernel keeps only a few requests pending per network namespace and
// refuses more with EAGAIN); the key thread makes every keyctl call, with
// the accept thread's process keyring linked into its own keyrings.
// Handshakes run on ordinary goroutines within two budgets (budget.go):
// peer slots for the handshakes started, work slots (max_concurrent) for
// those computing; accepted requests wait in a bounded queue for a peer
// slot.
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

	// The bounds are read once: a reload does not resize them. A
	// goroutine per handshake, started when a peer slot is free:
	// nothing idles.
	limit := max(1, d.Policy().Global().MaxConcurrent)
	queue := make(chan accepted, queueFactor*limit)
	peers := d.PeerSlots
	if peers <= 0 {
		peers = peerLimit(limit, cap(queue), noFileLimit())
	}
	work := newSlots(limit)
	d.mu.Lock()
	d.work = work
	d.mu.Unlock()
	d.log().Debug("budgets", "work_slots", limit, "peer_slots", peers, "queue", cap(queue))

	// hctx is the handshakes' context: it outlives ctx by the drain
	// grace.
	hctx, hcancel := context.WithCancelCause(context.Background())
	defer hcancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.dispatch(hctx, queue, newSlots(peers), work, keys, &wg)
	}()
	at.do(func() {
		if p := raiseAcceptPriority(); p != "" {
			d.log().Debug("accept thread priority raised", "to", p)
		}
		d.acceptLoop(ctx, queue)
	})
	close(queue)

	grace := d.Policy().Global().DrainTimeout
	busy := d.Stats()
	if busy.InFlight+busy.Queued > 0 {
		d.log().Info("draining: no more requests taken; the handshakes in flight may finish",
			"in_flight", busy.InFlight, "queued", busy.Queued, "drain_timeout", grace)
	}
	timer := time.AfterFunc(grace, func() {
		s := d.Stats()
		d.log().Warn("drain_timeout passed: ending the handshakes still running with ETIMEDOUT (the consumers retry)",
			"in_flight", s.InFlight, "queued", s.Queued)
		hcancel(errDraining)
	})
	wg.Wait()
	if timer.Stop() && busy.InFlight+busy.Queued > 0 {
		d.log().Info("drained: every handshake in flight finished")
	}
	return nil
}

const (
	// queueFactor: requests accepted beyond the peer slots wait in a
	// queue this many times max_concurrent long; past that, they stay
	// pending in the kernel.
	queueFactor = 4
	// hotPoll: after finding requests, the accept thread looks again this
	// soon even without READY: a burst's notifications lag behind its
	// submits.
	hotPoll = 10 * time.Millisecond
	// defaultSweep: see Daemon.Sweep.
	defaultSweep = 5 * time.Second
	// minRetry and maxRetry bound the backoff between ACCEPTs that
	// failed, and between failed waits for READY.
	minRetry = 10 * time.Millisecond
	maxRetry = 2 * time.Second
)

// dispatch starts a handshake for each queued request as peer slots
// free up, until the queue is closed. A request that cannot get a slot
// before hctx ends gets its DONE here.
func (d *Daemon) dispatch(hctx context.Context, queue <-chan accepted, peers, work slots, keys keyThread, wg *sync.WaitGroup) {
	for a := range queue {
		d.dispatchOne(hctx, a, peers, work, keys, wg)
	}
}

func (d *Daemon) dispatchOne(hctx context.Context, a accepted, peers, work slots, keys keyThread, wg *sync.WaitGroup) {
	started := false
	defer func() {
		if p := recover(); p != nil {
			d.logPanic("dispatching a request", p)
			if !started {
				d.finishQueued(a, fmt.Errorf("internal error: %v", p))
			}
		}
	}()
	if err := peers.acquire(hctx); err != nil {
		d.finishQueued(a, err)
		return
	}
	wg.Add(1)
	started = true
	go func() {
		defer wg.Done()
		defer peers.release()
		d.serveAccepted(hctx, keys, work, a)
	}()
}

// finishQueued answers a request that never started.
func (d *Daemon) finishQueued(a accepted, err error) {
	d.mu.Lock()
	d.queued--
	d.mu.Unlock()
	d.finish(&request{Request: a.req, accepted: a.at}, result{}, err)
}

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
// listened), after every READY, after lost notifications, while requests
// keep coming, at least every Sweep, and after a backoff when ACCEPT
// failed for a passing reason. A panic in a round is logged and the loop
// goes on after a backoff: requests already taken are in the queue, and
// the next sweep takes the rest.
func (d *Daemon) acceptLoop(ctx context.Context, queue chan<- accepted) {
	sweep := d.Sweep
	if sweep <= 0 {
		sweep = defaultSweep
	}
	backoff := minRetry
	for d.acceptRound(ctx, queue, sweep, &backoff) {
	}
}

// acceptRound sweeps once, calls Alive, and waits for READY (or the next
// retry or sweep); false means ctx ended. A panic anywhere in the round
// (the Kernel, Alive, the Notifier) is logged and the next round follows
// a backoff; a round that panics does not call Alive, so a loop that
// panics every time lets the watchdog restart the daemon.
func (d *Daemon) acceptRound(ctx context.Context, queue chan<- accepted, sweep time.Duration, backoff *time.Duration) (more bool) {
	defer func() {
		if p := recover(); p != nil {
			d.logPanic("accept thread", p)
			select {
			case <-time.After(*backoff):
			case <-ctx.Done():
			}
			*backoff = min(2**backoff, maxRetry)
			more = ctx.Err() == nil
		}
	}()
	n, err := d.acceptAll(ctx, queue)
	wait := *backoff
	switch {
	case err == nil && n > 0:
		*backoff = minRetry
		wait = hotPoll
	case err == nil:
		*backoff = minRetry
		wait = sweep
	case errors.Is(err, genl.ErrRetry):
		// A request may still be pending: try again soon, not at the
		// next READY, which may never come.
		d.count(&d.acceptRetries)
		d.log().Warn("ACCEPT failed for a passing reason; retrying", "err", err, "in", wait)
		*backoff = min(2**backoff, maxRetry)
	default:
		d.log().Error("ACCEPT failed", "err", err, "retry_in", wait)
		*backoff = min(2**backoff, maxRetry)
	}
	if d.Alive != nil {
		d.Alive()
	}
	return d.waitReady(ctx, wait, backoff)
}

// waitReady waits for READY, at most wait; false means ctx ended.
func (d *Daemon) waitReady(ctx context.Context, wait time.Duration, backoff *time.Duration) bool {
	wctx, cancel := context.WithTimeout(ctx, wait)
	err := d.Ready.Wait(wctx)
	cancel()
	switch {
	case ctx.Err() != nil:
		return false
	case err == nil || errors.Is(err, context.DeadlineExceeded):
	case errors.Is(err, genl.ErrOverrun):
		d.log().Warn("READY notifications lost; sweeping pending requests", "err", err)
	default:
		d.log().Error("waiting for READY", "err", err)
		select {
		case <-time.After(*backoff):
		case <-ctx.Done():
			return false
		}
		*backoff = min(2**backoff, maxRetry)
	}
	return true
}

// acceptAll sends ACCEPT until nothing is pending and returns how many
// requests it took, and the error that ended the sweep: nil when nothing
// was pending (or ctx ended). An unusable reply (genl.ErrBadReply) does
// not end it: that request is lost to us (its socket, if the reply named
// one, gets DONE with EIO), the others are not.
func (d *Daemon) acceptAll(ctx context.Context, queue chan<- accepted) (n int, err error) {
	for ; ctx.Err() == nil; n++ {
		var a accepted
		a.req, a.err = d.Kernel.Accept()
		a.at = time.Now()
		if a.err != nil && errors.Is(a.err, genl.ErrBadReply) {
			d.count(&d.badReplies)
			if a.req.FD < 0 {
				d.log().Error("ACCEPT reply unusable and without a socket: the kernel dequeued a request the daemon cannot answer (its consumer times out)", "err", a.err)
				continue
			}
		}
		if a.err != nil && a.req.FD < 0 {
			if errors.Is(a.err, genl.ErrNoRequest) {
				return n, nil
			}
			return n, a.err
		}
		d.mu.Lock()
		d.queued++
		d.mu.Unlock()
		select {
		case queue <- a:
		case <-ctx.Done():
			// Stopping: answer it now rather than leave it hanging.
			d.finishQueued(a, fmt.Errorf("shutting down with the queue full: %w", errDraining))
			return n + 1, nil
		}
	}
	return n, nil
}

// serveAccepted runs one request that has a peer slot.
func (d *Daemon) serveAccepted(ctx context.Context, keys keyThread, work slots, a accepted) {
	d.mu.Lock()
	d.queued--
	d.inflight++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.inflight--
		d.mu.Unlock()
	}()
	r := &request{Request: a.req, accepted: a.at, keys: keys, work: work}
	if a.err != nil {
		// The kernel installed the fd but the reply did not decode.
		d.finish(r, result{}, fmt.Errorf("decoding ACCEPT reply: %w", a.err))
		return
	}
	d.serve(ctx, r)
}
