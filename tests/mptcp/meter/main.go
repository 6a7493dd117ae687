// Command meter reads a byte stream to its end (tests/mptcp/run pipes
// connect's output into it) and reports its length, its SHA-256, and
// when it stalled: with -mark FILE, which holds the time a path was
// taken down (Unix nanoseconds, written by the test when it happens), the
// longest pause in the stream that ends after that time, and how long
// after it the data resumed.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	mark := flag.String("mark", "", "file holding the path-loss time (Unix ns); read at the end")
	flag.Parse()
	start := time.Now()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var total int64
	var times []time.Time // one per read
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			times = append(times, time.Now())
			h.Write(buf[:n])
			total += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "meter:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("bytes %d\nsha256 %s\n", total, hex.EncodeToString(h.Sum(nil)))
	if len(times) > 0 {
		fmt.Printf("first_byte_ms %d\nlast_byte_ms %d\n", times[0].Sub(start).Milliseconds(), times[len(times)-1].Sub(start).Milliseconds())
	}
	if *mark == "" {
		return
	}
	b, err := os.ReadFile(*mark)
	if err != nil {
		fmt.Println("loss none")
		return
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "meter: bad mark:", err)
		os.Exit(1)
	}
	loss := time.Unix(0, ns)
	// The longest gap between reads that ends after the loss: the
	// stall the lost path caused (a gap the loss fell into counts too).
	var gap time.Duration
	var resumed time.Time
	for i := 1; i < len(times); i++ {
		// Only pauses near the loss: one starting later has another cause.
		if !times[i].After(loss) || times[i-1].After(loss.Add(5*time.Second)) {
			continue
		}
		from := times[i-1]
		if d := times[i].Sub(from); d > gap {
			gap, resumed = d, times[i]
		}
	}
	if resumed.IsZero() {
		fmt.Println("loss after_last_byte")
		return
	}
	fmt.Printf("loss_to_resume_ms %d\nlongest_stall_ms %d\nloss_at_ms %d\n",
		resumed.Sub(loss).Milliseconds(), gap.Milliseconds(), loss.Sub(start).Milliseconds())
}
