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
	"syscall"
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

// BenchmarkStalledPeers is issue 8's load test: real handshakes (the
// NVMe target side, 8 at a time) run first alone, then while 4 ×
// max_concurrent silent peers and max_concurrent peers trickling their
// ClientHello at 1 byte/s hold requests open, each replaced as soon as it
// ends. It reports the real handshakes' p50 and p99 in both runs and
// their ratio, and how long the stalled requests lasted (the first-flight
// deadline). It fails if a real handshake fails or a stalled one ends
// with anything but ETIMEDOUT; it asserts no timing.
func BenchmarkStalledPeers(b *testing.B) {
	const maxConcurrent = 16
	td := newTestDaemon(b, fmt.Sprintf("[global]\nmax_concurrent = %d\nfirst_flight_timeout = \"3s\"\n", maxConcurrent))
	td.keys.add(1, nvmeID, key32(1))
	td.Log = discardLogger()
	td.start()
	peerCfg := &tls13.Config{PSKs: []tls13.PSK{{Identity: []byte(nvmeID), Key: key32(1), Hash: crypto.SHA256}}}

	real := func(n int) (lat []time.Duration, failed int) {
		type pair struct {
			consumer *os.File
			peer     net.Conn
		}
		pairs := make([]pair, n)
		for i := range pairs {
			c, p := socketPair(b)
			pairs[i] = pair{c, p}
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, p := range pairs {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				t0 := time.Now()
				pend := td.fk.Submit(int(p.consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, Timeout: 10 * time.Second})
				cli := tls13.Client(p.peer, peerCfg)
				herr := cli.Handshake(context.Background())
				r, err := pend.Wait(30 * time.Second)
				d := time.Since(t0)
				p.consumer.Close()
				p.peer.Close()
				mu.Lock()
				defer mu.Unlock()
				if herr != nil || err != nil || r.Status != 0 {
					failed++
					return
				}
				lat = append(lat, d)
			}()
		}
		wg.Wait()
		return lat, failed
	}
	pct := func(l []time.Duration, p float64) float64 {
		if len(l) == 0 {
			return 0
		}
		slices.Sort(l)
		return float64(l[int(p*float64(len(l)-1))].Microseconds()) / 1000
	}

	// Warm up (first handshakes, heap growth) outside both measurements.
	if _, failed := real(32); failed != 0 {
		b.Fatalf("%d warm-up handshakes failed", failed)
	}
	b.ResetTimer()
	base, failed := real(b.N)
	if failed != 0 {
		b.Fatalf("%d real handshakes failed without load", failed)
	}

	// The load: each stalled peer is replaced as soon as it ends.
	stop := make(chan struct{})
	var lwg sync.WaitGroup
	var smu sync.Mutex
	var stalled []time.Duration
	var wrong []string
	stall := func(trickle bool) {
		defer lwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			consumer, peer := socketPair(b)
			t0 := time.Now()
			pend := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, Timeout: 10 * time.Second})
			quit := make(chan struct{})
			if trickle {
				go func() {
					for _, c := range hello(300, 1<<14) {
						select {
						case <-quit:
							return
						case <-time.After(time.Second):
						}
						peer.Write([]byte{c})
					}
				}()
			}
			r, err := pend.Wait(30 * time.Second)
			close(quit)
			d := time.Since(t0)
			consumer.Close()
			peer.Close()
			smu.Lock()
			if err != nil || r.Status != syscall.ETIMEDOUT {
				wrong = append(wrong, fmt.Sprintf("status %v, err %v", r.Status, err))
			} else {
				stalled = append(stalled, d)
			}
			smu.Unlock()
		}
	}
	for i := range 5 * maxConcurrent {
		lwg.Add(1)
		go stall(i >= 4*maxConcurrent)
	}
	waitStats(b, td.Daemon, func(s Stats) bool { return s.InFlight >= 5*maxConcurrent })
	loaded, failed := real(b.N)
	close(stop)
	lwg.Wait()
	b.StopTimer()
	if failed != 0 {
		b.Errorf("%d of %d real handshakes failed under load", failed, b.N)
	}
	if len(wrong) != 0 {
		b.Errorf("%d stalled requests did not end with ETIMEDOUT: %v", len(wrong), wrong[:min(len(wrong), 5)])
	}
	b.ReportMetric(pct(base, 0.50), "p50-ms")
	b.ReportMetric(pct(base, 0.99), "p99-ms")
	b.ReportMetric(pct(loaded, 0.50), "loaded-p50-ms")
	b.ReportMetric(pct(loaded, 0.99), "loaded-p99-ms")
	if p := pct(base, 0.50); p > 0 {
		b.ReportMetric(pct(loaded, 0.50)/p, "p50-ratio")
	}
	if p := pct(base, 0.99); p > 0 {
		b.ReportMetric(pct(loaded, 0.99)/p, "p99-ratio")
	}
	b.ReportMetric(float64(len(stalled)), "stalled-ended")
	b.ReportMetric(pct(stalled, 0.50)/1000, "stalled-p50-s")
	b.ReportMetric(float64(failed), "real-failures")
}
