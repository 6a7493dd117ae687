package stdtls

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
)

// benchConfigs is the common setup: ECDSA P-256 server certificate
// verified by the client, TLS 1.3 only, no tickets; crypto/tls gets the
// same restrictions stdtls applies.
func benchConfigs(b *testing.B) (ccfg, scfg *tls.Config) {
	p := newPKI(b, certstest.ECDSAP256)
	ccfg, scfg = p.clientConfig(), p.serverConfig()
	for _, c := range []*tls.Config{ccfg, scfg} {
		c.MinVersion, c.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
		c.SessionTicketsDisabled = true
	}
	return ccfg, scfg
}

func plainHandshake(b *testing.B, ccfg, scfg *tls.Config) {
	c1, c2 := net.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(c2, scfg).Handshake() }()
	if err := tls.Client(c1, ccfg).Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	c1.Close()
	c2.Close()
}

func stdtlsHandshake(b *testing.B, ccfg, scfg *tls.Config) {
	c1, c2 := net.Pipe()
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() {
		s, err := Server(ctx, c2, scfg)
		s.Zero()
		errc <- err
	}()
	s, err := Client(ctx, c1, ccfg)
	if err != nil {
		b.Fatal(err)
	}
	s.Zero()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	c1.Close()
	c2.Close()
}

// BenchmarkHandshake compares a whole handshake (client and server, over
// net.Pipe) through stdtls with the same handshake on plain crypto/tls.
func BenchmarkHandshake(b *testing.B) {
	ccfg, scfg := benchConfigs(b)
	b.Run("crypto-tls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			plainHandshake(b, ccfg, scfg)
		}
	})
	b.Run("stdtls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			stdtlsHandshake(b, ccfg, scfg)
		}
	})
}

// BenchmarkHandshakeRatio interleaves both kinds of handshake, so that
// both see the same machine load, and reports stdtls's time over
// crypto/tls's ("ratio"; the target is at most 1.10).
func BenchmarkHandshakeRatio(b *testing.B) {
	ccfg, scfg := benchConfigs(b)
	var plain, ours time.Duration
	for b.Loop() {
		t0 := time.Now()
		plainHandshake(b, ccfg, scfg)
		t1 := time.Now()
		stdtlsHandshake(b, ccfg, scfg)
		t2 := time.Now()
		plain += t1.Sub(t0)
		ours += t2.Sub(t1)
	}
	b.ReportMetric(float64(plain.Nanoseconds())/float64(b.N), "ns-crypto-tls/op")
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ns-stdtls/op")
	b.ReportMetric(float64(ours)/float64(plain), "ratio")
}
