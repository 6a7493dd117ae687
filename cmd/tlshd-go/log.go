package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// newLogger logs key=value lines to w, one line per event: slog's text
// format quotes every value that holds a newline or another control
// character, so a multi-line error or stack stays on its line, escaped.
//
// When w is the journal's stream (systemd sets JOURNAL_STREAM to the
// device and inode of the stream it connected to stderr), each line
// starts with its syslog priority as sd-daemon(3) prefixes ("<3>" for
// ERROR; systemd's SyslogLevelPrefix= is on by default) so that
// `journalctl -p err` finds errors, and the time is left out: the journal
// stamps it.
func newLogger(w io.Writer, level *slog.LevelVar) *slog.Logger {
	if f, ok := w.(*os.File); ok && isJournalStream(f, os.Getenv("JOURNAL_STREAM")) {
		return newJournalLogger(w, level)
	}
	if level == nil {
		level = new(slog.LevelVar)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// isJournalStream reports whether f is the stream JOURNAL_STREAM
// ("DEV:INO") names: a child's stderr redirected elsewhere inherits the
// variable but is not the journal.
func isJournalStream(f *os.File, env string) bool {
	var dev, ino uint64
	if _, err := fmt.Sscanf(env, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// newJournalLogger writes lines with sd-daemon priority prefixes and no
// time.
func newJournalLogger(w io.Writer, level *slog.LevelVar) *slog.Logger {
	if level == nil {
		level = new(slog.LevelVar)
	}
	pw := &prefixWriter{out: w}
	inner := slog.NewTextHandler(pw, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(&journalHandler{inner: inner, w: pw})
}

// syslogPriority maps a level to sd-daemon's prefix: err, warning, info,
// debug.
func syslogPriority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// journalHandler sets the priority prefix of the line its inner handler
// writes; the lock makes prefix and line one write.
type journalHandler struct {
	inner slog.Handler
	w     *prefixWriter
}

type prefixWriter struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
	buf    []byte
}

// Write is called by the inner handler, with mu held by Handle.
func (w *prefixWriter) Write(p []byte) (int, error) {
	w.buf = append(append(w.buf[:0], w.prefix...), p...)
	if _, err := w.out.Write(w.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.prefix = syslogPriority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(attrs), w: h.w}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), w: h.w}
}

// logLevelFlag is --log-level: one of the policy's level names, or
// nothing (the policy's global.log_level applies).
type logLevelFlag struct {
	set   bool
	level slog.Level
}

var logLevelNames = map[string]slog.Level{
	"debug":   slog.LevelDebug,
	"info":    slog.LevelInfo,
	"warn":    slog.LevelWarn,
	"warning": slog.LevelWarn,
	"error":   slog.LevelError,
}

func (f *logLevelFlag) String() string {
	if !f.set {
		return ""
	}
	return strings.ToLower(f.level.String())
}

func (f *logLevelFlag) Set(s string) error {
	l, ok := logLevelNames[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	f.set, f.level = true, l
	return nil
}
