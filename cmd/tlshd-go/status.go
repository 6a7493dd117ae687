package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake"
	"github.com/tlshd-go/tlshd-go/status"
)

// startStatus counts the daemon's handshakes (through d.Events, which it
// sets) and serves them on the status socket until ctx ends. A socket
// that cannot be created is logged, not fatal: status is for operators,
// handshakes come first.
func startStatus(ctx context.Context, d *handshake.Daemon, policy func() *config.Policy, socket string, log *slog.Logger) {
	counters := &status.Counters{}
	d.Events = counters.Observe
	if socket == "" {
		return
	}
	src := &status.Source{
		Version:  version,
		Started:  time.Now(),
		Counters: counters,
		Stats:    d.Stats,
		Certificates: func() []string {
			var files []string
			p := policy()
			for _, r := range []config.Role{config.Client, config.Server} {
				if f := p.Defaults(r).X509.Certificate; f != "" && !contains(files, f) {
					files = append(files, f)
				}
			}
			return files
		},
	}
	l, err := status.Listen(socket)
	if err != nil {
		log.Warn("no status socket; `tlshd-go status` will not work", "path", socket, "err", err)
		return
	}
	srv := &status.Server{Source: src, Log: log}
	go func() {
		if err := srv.Serve(ctx, l); err != nil {
			log.Warn("status socket stopped", "err", err)
		}
		os.Remove(socket)
	}()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runStatus is `tlshd-go status`: the running daemon's counters.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "", "show the running daemon's handshake counters (root only)", stdout)
	socket := fs.String("socket", status.DefaultSocket, "the daemon's status `socket`")
	asJSON := fs.Bool("json", false, "print the counters as JSON")
	prom := fs.Bool("prometheus", false, "print the counters in Prometheus text format")
	out := fs.String("o", "", "with --prometheus: write to `file` atomically (for node_exporter's textfile collector, e.g. /var/lib/prometheus/node-exporter/tlshd-go.prom)")
	if code := parseFlags(fs, args, 0, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := status.Fetch(ctx, *socket)
	if err != nil {
		fmt.Fprintf(stderr, "tlshd-go status: %v\n", err)
		return 1
	}
	switch {
	case *prom && *out != "":
		err = writeAtomic(*out, func(w io.Writer) error { return status.WritePrometheus(w, snap) })
	case *prom:
		err = status.WritePrometheus(stdout, snap)
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(snap)
	default:
		printStatus(stdout, snap)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tlshd-go status: %v\n", err)
		return 1
	}
	return 0
}

// writeAtomic writes a file through a temporary one beside it, so that a
// collector never reads half of it.
func writeAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func printStatus(w io.Writer, s *status.Snapshot) {
	fmt.Fprintf(w, "tlshd-go %s, up %s\n", s.Version, s.Now.Sub(s.Started).Round(time.Second))
	fmt.Fprintf(w, "handshakes: %d succeeded, %d failed, %d in flight, %d queued\n", s.Succeeded, s.Failed, s.InFlight, s.Queued)
	if s.Duration.Count > 0 {
		fmt.Fprintf(w, "duration: p50 %s, p99 %s (last %d at most 4096)\n",
			secs(s.Duration.P50Seconds), secs(s.Duration.P99Seconds), s.Duration.Count)
	}
	if len(s.Handshakes) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLE\tAUTH\tRESULT\tSTATUS\tCOUNT")
		for _, h := range s.Handshakes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", h.Role, h.Auth, h.Result, h.Status, h.Count)
		}
		tw.Flush()
	}
	for _, c := range s.Certificates {
		if c.Error != "" {
			fmt.Fprintf(w, "certificate %s: %s\n", c.File, c.Error)
			continue
		}
		left := c.NotAfter.Sub(s.Now)
		when := fmt.Sprintf("in %d days", int(left.Hours()/24))
		if left < 0 {
			when = "EXPIRED"
		}
		fmt.Fprintf(w, "certificate %s: %s, expires %s (%s)\n", c.File, c.Subject, c.NotAfter.UTC().Format(time.DateOnly), when)
	}
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}
