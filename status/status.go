// Package status counts the daemon's handshakes and serves the counters
// to `tlshd-go status` over a root-only unix socket, as JSON, and renders
// them in Prometheus' text format for node_exporter's textfile collector.
//
// The daemon feeds it from handshake.Daemon's two hooks: Events (one
// Event per DONE) into Counters.Observe, and Stats (in flight, queued) read
// at each snapshot. Nothing here sees key material or identities.
package status

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake"
)

// window is how many recent durations the percentiles are computed over:
// enough for a stable p99, small enough to sort at each request.
const window = 4096

// Counters accumulates handshake events. The zero value is ready to use
// and it is safe for concurrent use.
type Counters struct {
	mu     sync.Mutex
	counts map[countKey]uint64
	recent []time.Duration // ring of the last window durations
	next   int
	total  uint64
	sum    time.Duration
}

type countKey struct {
	role, auth string
	status     syscall.Errno
}

// Observe counts one DONE. It is Daemon.Events and must not block: it
// takes a mutex held only for a map update.
func (c *Counters) Observe(ev handshake.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = make(map[countKey]uint64)
	}
	c.counts[countKey{ev.Role, ev.Auth, ev.Status}]++
	if len(c.recent) < window {
		c.recent = append(c.recent, ev.Duration)
	} else {
		c.recent[c.next] = ev.Duration
		c.next = (c.next + 1) % window
	}
	c.total++
	c.sum += ev.Duration
}

// A Snapshot is what `tlshd-go status` shows.
type Snapshot struct {
	Version      string        `json:"version"`
	Started      time.Time     `json:"started"`
	Now          time.Time     `json:"now"`
	InFlight     int           `json:"in_flight"`
	Queued       int           `json:"queued"`
	Succeeded    uint64        `json:"succeeded"`
	Failed       uint64        `json:"failed"`
	Handshakes   []Count       `json:"handshakes"`
	Duration     Durations     `json:"duration"`
	Certificates []Certificate `json:"certificates"`
}

// A Count is the number of handshakes of one role, authentication mode
// and DONE status.
type Count struct {
	Role   string `json:"role"`
	Auth   string `json:"auth"`
	Result string `json:"result"` // "ok" or "failed"
	Status string `json:"status"` // "0" or the errno's name, e.g. "EKEYREJECTED"
	Count  uint64 `json:"count"`
}

// Durations summarizes handshake durations: count and sum over the
// daemon's life, percentiles over the last 4096 handshakes.
type Durations struct {
	Count      uint64  `json:"count"`
	SumSeconds float64 `json:"sum_seconds"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
}

// A Certificate is one certificate file of the policy and when its leaf
// expires.
type Certificate struct {
	File     string    `json:"file"`
	Subject  string    `json:"subject,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// A Source gathers a Snapshot from the daemon's parts.
type Source struct {
	Version  string
	Started  time.Time
	Counters *Counters
	// Stats is handshake.Daemon.Stats.
	Stats func() handshake.Stats
	// Certificates lists the certificate files the current policy names.
	Certificates func() []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Snapshot reads the counters now.
func (s *Source) Snapshot() Snapshot {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	snap := Snapshot{Version: s.Version, Started: s.Started, Now: now()}
	if s.Stats != nil {
		st := s.Stats()
		snap.InFlight, snap.Queued, snap.Succeeded, snap.Failed = st.InFlight, st.Queued, st.Served, st.Failed
	}
	if s.Counters != nil {
		snap.Handshakes, snap.Duration = s.Counters.read()
	}
	if s.Certificates != nil {
		for _, f := range s.Certificates() {
			snap.Certificates = append(snap.Certificates, readCertificate(f))
		}
	}
	return snap
}

func (c *Counters) read() ([]Count, Durations) {
	c.mu.Lock()
	counts := make([]Count, 0, len(c.counts))
	for k, n := range c.counts {
		cnt := Count{Role: k.role, Auth: k.auth, Result: "ok", Status: "0", Count: n}
		if k.status != 0 {
			cnt.Result, cnt.Status = "failed", errnoName(k.status)
		}
		counts = append(counts, cnt)
	}
	recent := slices.Clone(c.recent)
	d := Durations{Count: c.total, SumSeconds: c.sum.Seconds()}
	c.mu.Unlock()

	sort.Slice(counts, func(i, j int) bool {
		a, b := counts[i], counts[j]
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		if a.Auth != b.Auth {
			return a.Auth < b.Auth
		}
		return a.Status < b.Status
	})
	if len(recent) > 0 {
		slices.Sort(recent)
		d.P50Seconds = quantile(recent, 0.50).Seconds()
		d.P99Seconds = quantile(recent, 0.99).Seconds()
	}
	return counts, d
}

// quantile is the nearest-rank quantile of sorted, which is not empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// errnoName is "ENOKEY" for ENOKEY: the name the kernel's consumers log.
func errnoName(e syscall.Errno) string {
	if name := unix.ErrnoName(e); name != "" {
		return name
	}
	return "errno " + e.Error()
}

// readCertificate reads the leaf of a PEM chain for its expiry. Files that
// cannot be read are reported, not skipped: an operator asking for status
// wants to know.
func readCertificate(file string) Certificate {
	c := Certificate{File: file}
	data, err := os.ReadFile(file)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			c.Error = errors.New("no CERTIFICATE block").Error()
			return c
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			c.Error = err.Error()
			return c
		}
		c.Subject, c.NotAfter = cert.Subject.String(), cert.NotAfter
		return c
	}
}
