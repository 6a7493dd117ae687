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
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
)

// Kernel is the net/handshake request side: genl.Conn in production.
type Kernel interface {
	// Accept takes the oldest pending request, or fails with an error
	// wrapping genl.ErrNoRequest. It must run on the request's locked
	// OS thread: the kernel links keyrings into that thread's keyrings.
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

// Keyring is the kernel keyring as a request sees it. Every method runs
// on the request's locked OS thread.
type Keyring interface {
	// Attach makes the keyrings a request needs (the policy's, and the
	// consumer's from the ACCEPT reply, 0 if absent) reachable from this
	// thread, so that their keys are possessed and readable. detach
	// undoes it.
	Attach(rings []config.Keyring, requestRing int32) (detach func(), err error)
	// ReadPSK reads a PSK by serial: its description (the identity) and
	// payload.
	ReadPSK(serial int32) (identity string, key []byte, err error)
	// SearchPSK finds the PSK whose description is identity; not found
	// is an error wrapping keyring.ErrNotFound.
	SearchPSK(identity string) (serial int32, key []byte, err error)
	// Read returns a key's payload (DER certificates and private keys).
	Read(serial int32) ([]byte, error)
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
	// OpenTPMKey opens a private key file in TPM form ("TSS2 PRIVATE
	// KEY" PEM) as a signer whose key stays in the TPM; nil means no TPM.
	OpenTPMKey certs.KeyOpener
	// Now is the clock for certificate checks; nil means time.Now.
	Now func() time.Time

	// inflight is read by Stats for status reports.
	mu       sync.Mutex
	inflight int
	served   uint64
	failed   uint64
}

// Stats is a snapshot for status lines (sd_notify STATUS=).
type Stats struct {
	InFlight       int
	Served, Failed uint64
}

// Stats returns the current counters.
func (d *Daemon) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{InFlight: d.inflight, Served: d.served, Failed: d.failed}
}

func (d *Daemon) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}

// Run serves requests until ctx is cancelled, then waits for the
// handshakes in flight. It sweeps pending requests at start (READY is
// not repeated for requests that were queued before we listened), after
// every READY and after lost notifications.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Kernel == nil || d.Ready == nil || d.Keyring == nil || d.Installer == nil || d.Policy == nil {
		return errors.New("handshake: Daemon needs Kernel, Ready, Keyring, Installer and Policy")
	}
	kick := make(chan struct{}, 1)
	kick <- struct{}{} // the start-up sweep
	wake := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}

	listenerDone := make(chan struct{})
	go func() {
		defer close(listenerDone)
		backoff := 10 * time.Millisecond
		for ctx.Err() == nil {
			err := d.Ready.Wait(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
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
			wake()
		}
	}()

	// The bound is read once: a reload does not resize it.
	slots := make(chan struct{}, max(1, d.Policy().Global().MaxConcurrent))
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		<-listenerDone
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
		// Accept until nothing is pending, one worker (and OS thread)
		// per request, at most max_concurrent at a time; each ACCEPT
		// happens on its worker's thread.
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			accepted := make(chan bool, 1)
			wg.Add(1)
			go d.worker(ctx, slots, accepted, &wg)
			if !<-accepted {
				break
			}
		}
	}
}

// worker accepts one request on a fresh locked thread and serves it. It
// never unlocks the thread: when it returns the thread exits, and with it
// the process and thread keyrings the request linked.
func (d *Daemon) worker(ctx context.Context, slots chan struct{}, accepted chan<- bool, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() { <-slots }()
	runtime.LockOSThread()

	req, err := d.Kernel.Accept()
	if err != nil && req.FD < 0 {
		if !errors.Is(err, genl.ErrNoRequest) {
			d.log().Error("ACCEPT failed", "err", err)
		}
		accepted <- false
		return
	}
	accepted <- true
	d.mu.Lock()
	d.inflight++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.inflight--
		d.mu.Unlock()
	}()
	if err != nil {
		// The kernel installed the fd but the reply did not decode.
		d.finish(req, &outcome{err: fmt.Errorf("decoding ACCEPT reply: %w", err)}, time.Now())
		return
	}
	d.serve(ctx, req)
}
