package status

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake"
)

func writeCert(t *testing.T, notAfter time.Time) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nfs.example"},
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func testSource(t *testing.T) *Source {
	c := &Counters{}
	for i := 1; i <= 100; i++ {
		c.Observe(handshake.Event{Role: "server", Auth: "psk", Duration: time.Duration(i) * time.Millisecond})
	}
	c.Observe(handshake.Event{Role: "client", Auth: "x509", Status: syscall.EKEYREJECTED, Duration: time.Second})
	c.Observe(handshake.Event{Role: "client", Auth: "x509", Status: syscall.EKEYREJECTED, Duration: time.Second})
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return &Source{
		Version:      "1.2.3",
		Started:      time.Unix(1700000000, 0),
		Counters:     c,
		Stats:        func() handshake.Stats { return handshake.Stats{InFlight: 3, Queued: 1, Served: 100, Failed: 2} },
		Certificates: func() []string { return []string{writeCert(t, expiry), "/nonexistent/cert.pem"} },
	}
}

func TestSnapshot(t *testing.T) {
	s := testSource(t).Snapshot()
	if s.InFlight != 3 || s.Queued != 1 || s.Succeeded != 100 || s.Failed != 2 {
		t.Errorf("stats %+v", s)
	}
	want := []Count{
		{Role: "client", Auth: "x509", Result: "failed", Status: "EKEYREJECTED", Count: 2},
		{Role: "server", Auth: "psk", Result: "ok", Status: "0", Count: 100},
	}
	if len(s.Handshakes) != 2 || s.Handshakes[0] != want[0] || s.Handshakes[1] != want[1] {
		t.Errorf("handshakes %+v, want %+v", s.Handshakes, want)
	}
	if s.Duration.Count != 102 || s.Duration.P50Seconds != 0.051 || s.Duration.P99Seconds != 1 {
		t.Errorf("durations %+v", s.Duration)
	}
	if len(s.Certificates) != 2 || s.Certificates[0].Subject != "CN=nfs.example" ||
		!s.Certificates[0].NotAfter.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) || s.Certificates[1].Error == "" {
		t.Errorf("certificates %+v", s.Certificates)
	}
}

func TestWindow(t *testing.T) {
	c := &Counters{}
	for i := 0; i < window; i++ {
		c.Observe(handshake.Event{Role: "client", Auth: "psk", Duration: time.Hour})
	}
	// The old slow handshakes roll out of the window.
	for i := 0; i < window; i++ {
		c.Observe(handshake.Event{Role: "client", Auth: "psk", Duration: time.Millisecond})
	}
	_, d := c.read()
	if d.P99Seconds != 0.001 || d.Count != 2*window {
		t.Errorf("%+v", d)
	}
}

func TestPrometheus(t *testing.T) {
	s := testSource(t).Snapshot()
	var buf bytes.Buffer
	if err := WritePrometheus(&buf, &s); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, line := range []string{
		`tlshd_go_handshakes_total{auth="psk",result="ok",role="server",status="0"} 100`,
		`tlshd_go_handshakes_total{auth="x509",result="failed",role="client",status="EKEYREJECTED"} 2`,
		`tlshd_go_handshakes_in_flight 3`,
		`tlshd_go_handshake_duration_seconds{quantile="0.99"} 1`,
		`tlshd_go_handshake_duration_seconds_count 102`,
		`tlshd_go_certificate_expiry_timestamp_seconds{file=`,
		`tlshd_go_certificate_read_error{file="/nonexistent/cert.pem"} 1`,
	} {
		if !strings.Contains(out, line+"") {
			t.Errorf("missing %q in\n%s", line, out)
		}
	}
	// What node_exporter will parse.
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("not valid text format: %v\n%s", err, out)
	}
	if f := fams["tlshd_go_handshake_duration_seconds"]; f == nil || f.GetType().String() != "SUMMARY" ||
		f.Metric[0].GetSummary().GetSampleCount() != 102 || len(f.Metric[0].GetSummary().GetQuantile()) != 2 {
		t.Errorf("duration summary %v", f)
	}
	if f := fams["tlshd_go_handshakes_total"]; f == nil || f.GetType().String() != "COUNTER" || len(f.Metric) != 2 {
		t.Errorf("handshakes_total %v", f)
	}
}

// TestPrometheusEscaping: label values with quotes, backslashes, line
// feeds and bad UTF-8 (file names are the operator's) still parse and
// come back as written.
func TestPrometheusEscaping(t *testing.T) {
	name := "/etc/tls/a \"b\"\\c\nd\xff.pem"
	snap := &Snapshot{Certificates: []Certificate{{File: name, Error: "x"}}, Duration: Durations{P50Seconds: math.Inf(1)}}
	var buf bytes.Buffer
	if err := WritePrometheus(&buf, snap); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
	f := fams["tlshd_go_certificate_read_error"]
	if f == nil || f.Metric[0].Label[0].GetValue() != strings.ToValidUTF8(name, "\uFFFD") {
		t.Errorf("label came back as %v", f)
	}
	if q := fams["tlshd_go_handshake_duration_seconds"].Metric[0].GetSummary().GetQuantile()[0].GetValue(); !math.IsInf(q, 1) {
		t.Errorf("p50 came back as %v", q)
	}
	if _, ok := fams["tlshd_go_start_time_seconds"]; ok {
		t.Error("a start time without one")
	}
}

func TestSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "status.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v", di.Mode())
	}
	var allow atomic.Bool
	allow.Store(true)
	srv := &Server{Source: testSource(t), Allow: func(u *unix.Ucred) bool { return allow.Load() && u.Pid == int32(os.Getpid()) }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	snap, err := Fetch(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Succeeded != 100 || len(snap.Handshakes) != 2 || snap.Version != "1.2.3" {
		t.Errorf("%+v", snap)
	}
	allow.Store(false)
	if _, err := Fetch(ctx, path); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("refused peer: %v", err)
	}
	// A second daemon replaces a stale socket.
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	// A daemon killed without cleanup leaves its socket behind.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	l2, err := Listen(path)
	if err != nil {
		t.Fatalf("relisten: %v", err)
	}
	l2.Close()
}

func FuzzDecodeReply(f *testing.F) {
	var buf bytes.Buffer
	s := testSource(&testing.T{}).Snapshot()
	json.NewEncoder(&buf).Encode(s)
	f.Add(buf.Bytes())
	f.Add([]byte(`{"error":"permission denied"}`))
	f.Add([]byte(`{"handshakes":[{"count":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		snap, err := decodeReply(bytes.NewReader(b))
		if err == nil && snap == nil {
			t.Fatal("nil snapshot without an error")
		}
		if err == nil {
			// Whatever decodes renders in Prometheus' format, as
			// Prometheus' own parser reads it.
			var out bytes.Buffer
			if err := WritePrometheus(&out, snap); err != nil {
				t.Fatal(err)
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			if _, err := p.TextToMetricFamilies(bytes.NewReader(out.Bytes())); err != nil {
				t.Fatalf("not valid text format: %v\n%s", err, out.Bytes())
			}
		}
	})
}
