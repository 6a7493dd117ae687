package config

import (
	"sync"
	"sync/atomic"
)

// A Holder keeps the current policy for SIGHUP reloads. Load is a single
// atomic read; a handshake should call it once and keep the *Policy it
// got, so a reload never changes the rules under a running handshake.
type Holder struct {
	cur atomic.Pointer[Policy]
	mu  sync.Mutex // serialises Reload
}

// NewHolder returns a Holder with p as the current policy (Default() if p
// is nil).
func NewHolder(p *Policy) *Holder {
	if p == nil {
		p = Default()
	}
	h := &Holder{}
	h.cur.Store(p)
	return h
}

// Load returns the current policy.
func (h *Holder) Load() *Policy { return h.cur.Load() }

// Store makes p the current policy; nil is ignored.
func (h *Holder) Store(p *Policy) {
	if p == nil {
		return
	}
	h.mu.Lock()
	h.cur.Store(p)
	h.mu.Unlock()
}

// Reload loads path and, if it is valid, makes it the current policy. On
// error the current policy stays in place and the error says why.
// Concurrent reloads are serialised, so the last call to finish wins.
func (h *Holder) Reload(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := Load(path)
	if err != nil {
		return err
	}
	h.cur.Store(p)
	return nil
}
