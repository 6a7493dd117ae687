package session

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/keyring"
)

// BenchmarkStoreUpdate is the store's part of one KeyUpdate upcall: read
// the session, store the next generation, destroy the old one.
func BenchmarkStoreUpdate(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, bc := range []struct {
		name  string
		store func(*testing.B) Store
	}{
		{"memory", func(*testing.B) Store { return &Memory{} }},
		{"keyring", func(b *testing.B) Store { return benchKeyring(b) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := bc.store(b)
			id, err := st.Put(testState(tls13.TLS_AES_256_GCM_SHA384, 48))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s, err := st.Get(id)
				if err != nil {
					b.Fatal(err)
				}
				s.TXGen++
				next, err := st.Put(s)
				if err != nil {
					b.Fatal(err)
				}
				st.Delete(id)
				s.Zero()
				id = next
			}
		})
	}
}

// BenchmarkKeptSessionMemory reports what each kept session costs: for
// Memory the Go heap, for Keyring what the kernel charges uid 0's key
// quota (/proc/key-users: payload and description bytes) per key; the
// struct key itself (slab, about 250 bytes) comes on top.
func BenchmarkKeptSessionMemory(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 2000
	b.Run("memory", func(b *testing.B) {
		for range b.N {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m := &Memory{}
			for range n {
				m.Put(testState(tls13.TLS_AES_256_GCM_SHA384, 48))
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/session")
			runtime.KeepAlive(m)
		}
	})
	b.Run("keyring", func(b *testing.B) {
		for range b.N {
			k := benchKeyring(b)
			keys0, bytes0 := keyUsers(b)
			for range n {
				if _, err := k.Put(testState(tls13.TLS_AES_256_GCM_SHA384, 48)); err != nil {
					b.Fatal(err)
				}
			}
			keys1, bytes1 := keyUsers(b)
			b.ReportMetric(float64(bytes1-bytes0)/float64(keys1-keys0), "quotaB/session")
			invalidate(keyring.Serial(k.Ring()))
		}
	})
}

func benchKeyring(b *testing.B) *Keyring {
	k := &Keyring{Name: fmt.Sprintf("tlshd-go:sessions-bench-%d-%d", os.Getpid(), time.Now().UnixNano())}
	if err := k.Open(); err != nil {
		b.Skipf("no keyrings here: %v", err)
	}
	b.Cleanup(func() { invalidate(keyring.Serial(k.Ring())) })
	return k
}

// keyUsers returns uid 0's key count and quota bytes (/proc/key-users:
// "uid: usage nkeys/nikeys qnkeys/maxkeys qnbytes/maxbytes").
func keyUsers(b *testing.B) (keys, bytes int) {
	f, err := os.Open("/proc/key-users")
	if err != nil {
		b.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) == 5 && fl[0] == "0:" {
			var a, c int
			fmt.Sscanf(fl[3], "%d/%d", &keys, &a)
			fmt.Sscanf(fl[4], "%d/%d", &bytes, &c)
			return keys, bytes
		}
	}
	b.Skip("uid 0 not in /proc/key-users")
	return 0, 0
}
