package status

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// WritePrometheus writes snap in Prometheus' text exposition format
// (version 0.0.4), the format node_exporter's textfile collector reads:
// families in name order, each with HELP and TYPE, its samples sorted,
// label names in order and label values escaped. Written by hand: the
// client library would link protobuf and a global registry into the
// daemon for seven families (the tests parse the output with
// Prometheus' own parser).
func WritePrometheus(w io.Writer, snap *Snapshot) error {
	var fams []family
	add := func(name, typ, help string, samples ...sample) {
		if len(samples) > 0 {
			fams = append(fams, family{name, typ, help, samples})
		}
	}
	var totals, expiry, readErr []sample
	for _, h := range snap.Handshakes {
		totals = append(totals, sample{"", labels("auth", h.Auth, "result", h.Result, "role", h.Role, "status", h.Status), float64(h.Count)})
	}
	for _, c := range snap.Certificates {
		if c.Error != "" {
			readErr = append(readErr, sample{"", labels("file", c.File), 1})
			continue
		}
		expiry = append(expiry, sample{"", labels("file", c.File, "subject", c.Subject), float64(c.NotAfter.Unix())})
	}
	add("tlshd_go_handshakes_total", "counter",
		"Handshakes that got a DONE, by role, authentication, result and DONE status.", totals...)
	add("tlshd_go_handshakes_in_flight", "gauge", "Handshakes running now.", sample{"", "", float64(snap.InFlight)})
	add("tlshd_go_handshakes_queued", "gauge", "Handshakes accepted and waiting for a worker.", sample{"", "", float64(snap.Queued)})
	d := snap.Duration
	add("tlshd_go_handshake_duration_seconds", "summary",
		"Time from ACCEPT to DONE; quantiles over the last 4096 handshakes.",
		sample{"", labels("quantile", "0.5"), d.P50Seconds},
		sample{"", labels("quantile", "0.99"), d.P99Seconds},
		sample{"_sum", "", d.SumSeconds},
		sample{"_count", "", float64(d.Count)})
	add("tlshd_go_certificate_expiry_timestamp_seconds", "gauge",
		"When the leaf certificate of a policy certificate file expires (Unix time).", expiry...)
	add("tlshd_go_certificate_read_error", "gauge", "1 if a policy certificate file could not be read.", readErr...)
	if !snap.Started.IsZero() {
		add("tlshd_go_start_time_seconds", "gauge", "When the daemon started (Unix time).",
			sample{"", labels("version", snap.Version), float64(snap.Started.Unix())})
	}

	slices.SortFunc(fams, func(a, b family) int { return strings.Compare(a.name, b.name) })
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		if f.typ != "summary" {
			// A summary keeps its quantiles, then _sum and _count.
			slices.SortStableFunc(f.samples, func(a, b sample) int { return strings.Compare(a.labels, b.labels) })
			f.samples = slices.CompactFunc(f.samples, func(a, b sample) bool { return a.labels == b.labels })
		}
		bw.WriteString("# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.typ + "\n")
		for _, s := range f.samples {
			bw.WriteString(f.name + s.suffix + s.labels + " " + formatValue(s.value) + "\n")
		}
	}
	return bw.Flush()
}

type family struct {
	name, typ, help string
	samples         []sample
}

type sample struct {
	suffix string // "", "_sum", "_count"
	labels string // `{name="value",...}` or ""
	value  float64
}

// labels renders name/value pairs, given in name order, as a label set.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i] + `="` + escapeLabel(kv[i+1]) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

// escapeLabel escapes a label value as the text format requires:
// backslash, double quote and line feed; invalid UTF-8 is replaced.
func escapeLabel(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
