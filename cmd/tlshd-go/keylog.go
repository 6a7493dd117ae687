package main

import (
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/tlshd-go/tlshd-go/config"
)

// lockedWriter serialises the key log lines of concurrent handshakes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// openKeyLog opens the NSS key log the environment (SSLKEYLOGFILE, as
// tlshd and every TLS library honour it) or the policy ([debug] keylog)
// asks for, for the daemon's lifetime: nil, nil when neither does. It
// warns, since whoever reads the file can decrypt every connection served.
func openKeyLog(getenv func(string) string, policy *config.Policy, log *slog.Logger) (io.Writer, func(), error) {
	path, from := getenv("SSLKEYLOGFILE"), "SSLKEYLOGFILE"
	if path == "" {
		path, from = policy.Global().KeyLog, "[debug] keylog"
	}
	if path == "" {
		return nil, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	log.Warn("logging TLS traffic secrets: anyone who can read the file can decrypt every connection; for debugging only",
		"file", path, "from", from)
	return &lockedWriter{w: f}, func() { f.Close() }, nil
}
