package handshake

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"
)

// maxReverseLookup caps the reverse DNS lookup of an x509 client's server.
// tlshd's lookup was seen to stall for about 10 s in a network namespace,
// racing nvme-tcp's own 10 s timeout; here it takes at most this long, or
// a quarter of the handshake's deadline if that is shorter.
const maxReverseLookup = 2 * time.Second

// reverseName is the name an x509 client sends as SNI and verifies when
// the kernel gave the server by address only (no PEERNAME, or an address
// as PEERNAME, which is what an NFS mount by address sends), as tlshd
// does: the first name reverse DNS gives for the address. The lookup runs
// on the request's own goroutine, never on the accept or key thread, so a
// resolver that does not answer holds up this handshake alone, and only
// for the bound. "" (verify against the address alone, as before) when
// the policy turned the fallback off ([client.x509] reverse_dns = false),
// the daemon has no resolver, or the lookup fails; a failure is logged.
func (d *Daemon) reverseName(ctx context.Context, r *request) string {
	if !r.peer.IsValid() || d.LookupAddr == nil || !r.settings.X509.ReverseDNS || !namedByAddress(r.PeerName) {
		return ""
	}
	bound := min(maxReverseLookup, r.settings.Deadline(r.Timeout)/4)
	lctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	addr := r.peer.Addr().WithZone("").Unmap()
	start := time.Now()
	type answer struct {
		names []string
		err   error
	}
	// A resolver that ignores its context (as a cgo lookup may) must not
	// hold the handshake past the bound either.
	done := make(chan answer, 1)
	go func() {
		names, err := d.LookupAddr(lctx, addr.String())
		done <- answer{names, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-lctx.Done():
		a.err = lctx.Err()
	}
	if a.err == nil {
		for _, n := range a.names {
			n = strings.TrimSuffix(n, ".")
			if _, err := netip.ParseAddr(n); n != "" && err != nil {
				d.log().Debug("server named by reverse DNS", "addr", addr, "name", n)
				return n
			}
		}
		a.err = errors.New("no name")
	}
	msg := "reverse DNS lookup of the server failed; verifying its certificate against the address"
	if errors.Is(a.err, context.DeadlineExceeded) {
		msg = "reverse DNS lookup of the server timed out; verifying its certificate against the address"
	}
	d.log().Warn(msg, "addr", addr, "err", a.err, "bound", bound, "took", time.Since(start).Round(time.Millisecond))
	return ""
}

// namedByAddress reports whether PEERNAME names no host: empty, or an
// address literal (brackets and zone allowed).
func namedByAddress(peerName string) bool {
	h := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(peerName), "["), "]")
	if h == "" {
		return true
	}
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i]
	}
	_, err := netip.ParseAddr(h)
	return err == nil
}
