package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestHolderReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	writeFile(t, path, "[[peer]]\nname = \"one\"\nmatch.role = \"client\"\n")
	p1, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(p1)
	if h.Load() != p1 {
		t.Fatal("Load() is not the initial policy")
	}

	// A handshake that started under p1 keeps it.
	inFlight := h.Load()

	writeFile(t, path, "[[peer]]\nname = \"two\"\nmatch.role = \"client\"\n")
	if err := h.Reload(path); err != nil {
		t.Fatal(err)
	}
	if got := h.Load().Resolve(Match{Role: Client}).Rule; got != "two" {
		t.Errorf("after reload: rule %q, want two", got)
	}
	if got := inFlight.Resolve(Match{Role: Client}).Rule; got != "one" {
		t.Errorf("in-flight policy changed: rule %q", got)
	}

	// A broken file keeps the current policy.
	p2 := h.Load()
	writeFile(t, path, "[[peer]]\nname = \"three\"\ngroups = [\"x448\"]\n")
	err = h.Reload(path)
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 3 || !strings.Contains(err.Error(), `unknown group "x448"`) {
		t.Errorf("Reload(broken) = %v", err)
	}
	if h.Load() != p2 {
		t.Error("broken reload replaced the policy")
	}
	// So does a missing file.
	if err := h.Reload(filepath.Join(dir, "gone.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Reload(missing) = %v", err)
	}
	if h.Load() != p2 {
		t.Error("missing-file reload replaced the policy")
	}

	h.Store(nil)
	if h.Load() != p2 {
		t.Error("Store(nil) replaced the policy")
	}
	if NewHolder(nil).Load() == nil {
		t.Error("NewHolder(nil).Load() = nil")
	}
}

// TestHolderConcurrent resolves from many goroutines while reloading;
// run it with -race.
func TestHolderConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	gen := func(i int) string {
		return fmt.Sprintf("[[peer]]\nname = \"gen%d\"\n[peer.match]\naddress = [\"10.0.0.0/8\"]\n", i)
	}
	writeFile(t, path, gen(0))
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(p)
	addr := netip.MustParseAddr("10.1.2.3")

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				pol := h.Load()
				// Two resolutions against the same policy, as a server
				// does before and after the ClientHello, always agree.
				a := pol.Resolve(Match{Role: Server, Addr: addr})
				b := pol.Resolve(Match{Role: Server, Addr: addr, PSKIdentity: "id"})
				if a != b || !strings.HasPrefix(a.Rule, "gen") {
					t.Errorf("inconsistent resolution: %q vs %q", a.Rule, b.Rule)
					return
				}
				_ = len(a.CipherSuites) + len(a.X509.TrustAnchors)
			}
		}()
	}
	for i := 1; i < 50; i++ {
		if i%5 == 0 {
			writeFile(t, path, "[[peer]\n") // broken
			if err := h.Reload(path); err == nil {
				t.Error("broken reload succeeded")
			}
			continue
		}
		writeFile(t, path, gen(i))
		if err := h.Reload(path); err != nil {
			t.Error(err)
		}
	}
	// Concurrent reloads serialise.
	var rwg sync.WaitGroup
	for i := 0; i < 4; i++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			if err := h.Reload(path); err != nil {
				t.Error(err)
			}
		}()
	}
	rwg.Wait()
	close(stop)
	wg.Wait()
	if got := h.Load().Resolve(Match{Role: Client, Addr: addr}).Rule; got != "gen49" {
		t.Errorf("final rule %q, want gen49", got)
	}
}
