package handshake

import (
	"fmt"
	"runtime"

	"github.com/tlshd-go/tlshd-go/config"
)

// A thread runs functions one at a time on a single OS thread that it
// never gives back: keyrings live in per-thread credentials, so the
// thread that sends ACCEPT (and gets the consumer's keyring linked into
// its process keyring) must be the one that reads the keys.
type thread struct {
	fns    chan func()
	urgent chan func() // run before anything queued in fns
}

func startThread() *thread {
	t := &thread{fns: make(chan func()), urgent: make(chan func())}
	go func() {
		// Never unlocked: when the loop ends the OS thread exits, and
		// the keyrings linked to it with it.
		runtime.LockOSThread()
		for {
			select {
			case f := <-t.urgent:
				f()
				continue
			default:
			}
			select {
			case f := <-t.urgent:
				f()
			case f, ok := <-t.fns:
				if !ok {
					return
				}
				f()
			}
		}
	}()
	return t
}

// do runs f on the thread and waits for it; a panic in f is re-raised in
// the caller, not on the thread.
func (t *thread) do(f func()) { t.run(t.fns, f) }

// doUrgent is do ahead of the queue: ACCEPT goes before key reads.
func (t *thread) doUrgent(f func()) { t.run(t.urgent, f) }

func (t *thread) run(c chan func(), f func()) {
	var p any
	done := make(chan struct{})
	c <- func() {
		defer close(done)
		defer func() { p = recover() }()
		f()
	}
	<-done
	if p != nil {
		panic(fmt.Sprint("on the key thread: ", p))
	}
}

func (t *thread) stop() { close(t.fns) }

// threadKeyring makes every Keyring call on the key thread.
type threadKeyring struct {
	t *thread
	k Keyring
}

func (k *threadKeyring) Attach(rings []config.Keyring, requestRing int32) (attached []int32, detach func(), err error) {
	var inner func()
	k.t.do(func() { attached, inner, err = k.k.Attach(rings, requestRing) })
	if inner == nil {
		return attached, nil, err
	}
	return attached, func() { k.t.do(inner) }, err
}

func (k *threadKeyring) ReadPSK(serial int32) (id string, key []byte, err error) {
	k.t.do(func() { id, key, err = k.k.ReadPSK(serial) })
	return
}

func (k *threadKeyring) SearchPSK(rings []int32, identity string) (serial int32, key []byte, err error) {
	k.t.do(func() { serial, key, err = k.k.SearchPSK(rings, identity) })
	return
}

func (k *threadKeyring) Share() (serial int32, err error) {
	k.t.do(func() { serial, err = k.k.Share() })
	return
}

func (k *threadKeyring) Read(serial int32) (b []byte, err error) {
	k.t.do(func() { b, err = k.k.Read(serial) })
	return
}
