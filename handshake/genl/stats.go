package genl

import (
	"errors"
	"sync/atomic"
)

// Stats counts what a Conn's ACCEPTs and DONEs met, for a daemon's status
// report. Every ACCEPT counts in exactly one of Accepted, NoRequest,
// Retry, BadReply and Fatal.
type Stats struct {
	Accepted  uint64 // requests handed over with a usable reply
	NoRequest uint64 // nothing pending (ErrNoRequest)
	Retry     uint64 // passing failures (ErrRetry)
	BadReply  uint64 // unusable replies (ErrBadReply), of which:
	Truncated uint64 //   truncated (ErrTruncated, MSG_TRUNC)
	NoSockFD  uint64 //   without SOCKFD (ErrNoSockFD)
	Fatal     uint64 // any other error

	// StrayFDs counts file descriptors that arrived on the ACCEPT socket
	// as SCM_RIGHTS and were closed (none ever should).
	StrayFDs uint64

	// SessionIDOmitted counts DONEs whose SessionID was left out
	// because the kernel lacks the KeyUpdate upcall.
	SessionIDOmitted uint64
}

// counters are a Conn's Stats, updated atomically: Accept and Done run
// on several threads.
type counters struct {
	accepted, noRequest, retry, badReply, truncated, noSockFD, fatal atomic.Uint64
	strayFDs, sessionIDOmitted                                       atomic.Uint64
}

// count records the outcome of one ACCEPT.
func (c *counters) count(err error) {
	switch {
	case err == nil:
		c.accepted.Add(1)
	case errors.Is(err, ErrNoRequest):
		c.noRequest.Add(1)
	case errors.Is(err, ErrRetry):
		c.retry.Add(1)
	case errors.Is(err, ErrBadReply):
		c.badReply.Add(1)
		if errors.Is(err, ErrTruncated) {
			c.truncated.Add(1)
		}
		if errors.Is(err, ErrNoSockFD) {
			c.noSockFD.Add(1)
		}
	default:
		c.fatal.Add(1)
	}
}

// Stats returns the counts so far.
func (c *Conn) Stats() Stats {
	s := &c.stats
	return Stats{
		Accepted: s.accepted.Load(), NoRequest: s.noRequest.Load(), Retry: s.retry.Load(),
		BadReply: s.badReply.Load(), Truncated: s.truncated.Load(), NoSockFD: s.noSockFD.Load(),
		Fatal: s.fatal.Load(), StrayFDs: s.strayFDs.Load(), SessionIDOmitted: s.sessionIDOmitted.Load(),
	}
}
