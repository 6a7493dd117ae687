package status

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// collector exposes a Snapshot as Prometheus metrics.
type collector struct{ snap *Snapshot }

var (
	descHandshakes = prometheus.NewDesc("tlshd_go_handshakes_total",
		"Handshakes that got a DONE, by role, authentication, result and DONE status.",
		[]string{"role", "auth", "result", "status"}, nil)
	descInFlight = prometheus.NewDesc("tlshd_go_handshakes_in_flight", "Handshakes running now.", nil, nil)
	descQueued   = prometheus.NewDesc("tlshd_go_handshakes_queued", "Handshakes accepted and waiting for a worker.", nil, nil)
	descDuration = prometheus.NewDesc("tlshd_go_handshake_duration_seconds",
		"Time from ACCEPT to DONE; quantiles over the last 4096 handshakes.", nil, nil)
	descCertExpiry = prometheus.NewDesc("tlshd_go_certificate_expiry_timestamp_seconds",
		"When the leaf certificate of a policy certificate file expires (Unix time).", []string{"file", "subject"}, nil)
	descCertError = prometheus.NewDesc("tlshd_go_certificate_read_error",
		"1 if a policy certificate file could not be read.", []string{"file"}, nil)
	descStart = prometheus.NewDesc("tlshd_go_start_time_seconds", "When the daemon started (Unix time).", []string{"version"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHandshakes, descInFlight, descQueued, descDuration, descCertExpiry, descCertError, descStart} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snap
	for _, h := range s.Handshakes {
		ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(h.Count), h.Role, h.Auth, h.Result, h.Status)
	}
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstSummary(descDuration, s.Duration.Count, s.Duration.SumSeconds,
		map[float64]float64{0.5: s.Duration.P50Seconds, 0.99: s.Duration.P99Seconds})
	for _, cert := range s.Certificates {
		if cert.Error != "" {
			ch <- prometheus.MustNewConstMetric(descCertError, prometheus.GaugeValue, 1, cert.File)
			continue
		}
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), cert.File, cert.Subject)
	}
	if !s.Started.IsZero() {
		ch <- prometheus.MustNewConstMetric(descStart, prometheus.GaugeValue, float64(s.Started.Unix()), s.Version)
	}
}

// WritePrometheus writes snap in Prometheus' text exposition format, the
// format node_exporter's textfile collector reads.
func WritePrometheus(w io.Writer, snap *Snapshot) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(collector{snap}); err != nil {
		return err
	}
	families, err := reg.Gather()
	if err != nil {
		return err
	}
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return err
		}
	}
	return nil
}
