package handshake

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/tlshd-go/tlshd-go/config"
)

// A thread runs functions one at a time on a single OS thread that it
// never gives back. Keyrings live in per-thread credentials, so the
// daemon keeps two: the accept thread, whose process keyring the kernel
// links each consumer's keyring into at ACCEPT, and the key thread, which
// links that process keyring (and the keyrings a request needs) into its
// own and makes every keyctl call.
type thread struct {
	fns chan func()
}

func startThread() *thread {
	t := &thread{fns: make(chan func())}
	go func() {
		// Never unlocked: when the loop ends the OS thread exits, and
		// the keyrings linked to it with it.
		runtime.LockOSThread()
		for f := range t.fns {
			f()
		}
	}()
	return t
}

// do runs f on the thread and waits for it; a panic in f is re-raised in
// the caller, not on the thread, which goes on serving.
func (t *thread) do(f func()) {
	var p any
	done := make(chan struct{})
	t.fns <- func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				if tp, ok := v.(*threadPanic); ok {
					p = tp
				} else {
					p = &threadPanic{value: v, stack: debug.Stack()}
				}
			}
		}()
		f()
	}
	<-done
	if p != nil {
		panic(p)
	}
}

// threadPanic is a panic on a locked thread, re-raised in the caller of
// do with the stack of where it happened.
type threadPanic struct {
	value any
	stack []byte
}

func (p *threadPanic) String() string { return fmt.Sprint("on a locked thread: ", p.value) }

func (t *thread) stop() { close(t.fns) }

// keyThread is the part of Keyring a request uses, every call made on the
// key thread (Share belongs to the accept thread alone).
type keyThread interface {
	Attach(rings []config.Keyring, requestRing int32) (attached []int32, detach func(), err error)
	ReadPSK(serial int32) (identity string, key []byte, err error)
	SearchPSK(rings []int32, identity string) (serial int32, key []byte, err error)
	Read(serial int32) ([]byte, error)
}

// threadKeyring makes Keyring calls on the key thread.
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

func (k *threadKeyring) Read(serial int32) (b []byte, err error) {
	k.t.do(func() { b, err = k.k.Read(serial) })
	return
}
