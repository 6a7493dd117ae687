package handshake

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
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

// logPanic logs a recovered panic with its stack on one line: the
// stack's lines are joined with " | ", so no handler splits it. A panic
// re-raised from a locked thread (thread.do) carries the stack of where
// it happened, which is logged instead of the re-raiser's.
func (d *Daemon) logPanic(where string, p any) {
	d.mu.Lock()
	d.panics++
	d.mu.Unlock()
	stack := debug.Stack()
	if tp, ok := p.(*threadPanic); ok {
		stack = tp.stack
	}
	d.log().Error("panic recovered", "in", where, "panic", fmt.Sprint(p), "stack", flattenStack(stack))
}

// flattenStack puts a runtime stack on one line: "func at file:line"
// frames separated by " | ".
func flattenStack(stack []byte) string {
	s := strings.TrimSpace(string(stack))
	s = strings.ReplaceAll(s, "\n\t", " at ")
	return strings.ReplaceAll(s, "\n", " | ")
}
