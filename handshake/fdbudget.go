package handshake

import "fmt"

// FDReserve is what the daemon keeps open besides requests, with room to
// spare (budget.go's fdReserve): stdio, the genetlink and READY sockets,
// the accept thread's ACCEPT socket, the runtime's epoll and wake-up
// descriptors, the TPM, and the files opened for a moment (sd_notify,
// /proc/keys, a reload).
const FDReserve = fdReserve

// FDsNeeded is the fewest file descriptors the daemon serves maxConcurrent
// handshakes with: every handshake started holds the socket the kernel
// installed at ACCEPT and nothing more (fdsPerHandshake), at least
// maxConcurrent of them run, every accepted request waiting in the queue
// (queueFactor × maxConcurrent) holds its socket, the dispatcher and the
// accept thread one each while they wait, and FDReserve. The kernel
// installs a request's socket in our table at ACCEPT, so past this limit
// ACCEPT fails with EMFILE. Whatever the limit leaves beyond this becomes
// peer slots: handshakes waiting on silent peers (peerLimit).
//
//	FDsNeeded(n) = n + 4n + 2 + 64 = 5n + 66
func FDsNeeded(maxConcurrent int) uint64 {
	n := uint64(max(1, maxConcurrent))
	return fdsPerHandshake*n + queueFactor*n + 2 + FDReserve
}

// MaxConcurrentFor is the largest max_concurrent whose FDsNeeded fits in
// limit (0 if none does).
func MaxConcurrentFor(limit uint64) int {
	fixed := uint64(2 + FDReserve)
	if limit < fixed+fdsPerHandshake+queueFactor {
		return 0
	}
	return int((limit - fixed) / (fdsPerHandshake + queueFactor))
}

// CheckFDLimit returns an error if a descriptor limit (RLIMIT_NOFILE)
// cannot hold what maxConcurrent handshakes and their queue need: the
// daemon refuses to start rather than leave requests to EMFILE.
func CheckFDLimit(maxConcurrent int, limit uint64) error {
	need := FDsNeeded(maxConcurrent)
	if need <= limit {
		return nil
	}
	return fmt.Errorf("global.max_concurrent = %d needs %d file descriptors (%d per slot: %d for a handshake in flight, %d for the queue; %d more), but the limit (RLIMIT_NOFILE) is %d: "+
		"lower max_concurrent to at most %d or raise LimitNOFILE= to at least %d",
		maxConcurrent, need, fdsPerHandshake+queueFactor, fdsPerHandshake, queueFactor, 2+FDReserve, limit, MaxConcurrentFor(limit), need)
}
