package handshake

import (
	"log/slog"
	"syscall"
	"time"
)

// An Event describes one request that got its DONE, for counters such as
// `tlshd-go status`. It carries no key material and no identity.
type Event struct {
	Role     string        // "client" or "server" ("unknown" if the request never got that far)
	Auth     string        // "psk", "x509" or "unauth"
	Status   syscall.Errno // the DONE status: 0 on success
	Duration time.Duration // from ACCEPT to DONE
}

// emit hands ev to d.Events, if set.
func (d *Daemon) emit(ev Event) {
	if d.Events != nil {
		d.Events(ev)
	}
}

// log is where the daemon's lines go: d.Log, else slog's default.
func (d *Daemon) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}
