package handshake

import (
	"context"
	"crypto"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// BenchmarkDaemon drives the daemon through the fake kernel with N
// requests in flight at a time, each on a real loopback socket whose
// other end runs our engine as the NVMe host: the target side of NVMe/TCP
// (psk_dhe_ke, X25519). It reports handshakes per second, the p50 and p99
// of the time from submit to DONE, and the peak RSS of the test process
// (daemon and peers together: they share the process).
func BenchmarkDaemon(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run("inflight="+strconv.Itoa(n), func(b *testing.B) {
			benchDaemon(b, n)
		})
	}
}

func benchDaemon(b *testing.B, inflight int) {
	td := newTestDaemon(b, "[global]\nmax_concurrent = 512\n")
	td.keys.add(1, nvmeID, key32(1))
	td.Log = discardLogger()
	td.start()
	peerCfg := &tls13.Config{PSKs: []tls13.PSK{{Identity: []byte(nvmeID), Key: key32(1), Hash: crypto.SHA256}}}

	// A pool of connected socket pairs, made outside the timed loop.
	type pair struct {
		consumer *os.File
		peer     net.Conn
	}
	mk := func() pair {
		c, p := socketPair(b)
		return pair{c, p}
	}

	latencies := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	pairs := make([]pair, b.N)
	for i := range pairs {
		pairs[i] = mk()
	}
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(p pair) {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			pend := td.fk.Submit(int(p.consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, Timeout: 30 * time.Second})
			cli := tls13.Client(p.peer, peerCfg)
			if err := cli.Handshake(context.Background()); err != nil {
				b.Error(err)
			}
			r, err := pend.Wait(60 * time.Second)
			if err != nil || r.Status != 0 {
				b.Errorf("DONE %+v %v", r, err)
			}
			d := time.Since(t0)
			p.consumer.Close()
			p.peer.Close()
			mu.Lock()
			latencies = append(latencies, d)
			mu.Unlock()
		}(pairs[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "handshakes/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	if kb := peakRSSKB(); kb > 0 {
		b.ReportMetric(float64(kb)/1024, "peak-rss-MB")
	}
}

// peakRSSKB is VmHWM from /proc/self/status.
func peakRSSKB() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb
		}
	}
	return 0
}
