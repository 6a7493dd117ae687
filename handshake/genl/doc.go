// Package genl speaks the kernel's "handshake" generic netlink family
// (net/handshake, Linux ≥ 6.5): it waits for READY notifications, takes
// pending requests with ACCEPT and reports results with DONE. It knows
// nothing about TLS.
//
// A daemon uses two kinds of socket, because a READY multicast arriving on
// a request socket would break the request/reply matching of
// genetlink.Conn.Execute:
//
//   - a Listener, which joins the "tlshd" multicast group and returns from
//     Wait when a READY arrives (or when notifications were lost, see
//     ErrOverrun);
//   - a Conn, which sends ACCEPT and DONE.
//
// After every READY, after ErrOverrun and once at start-up (READY is never
// re-sent), the daemon calls Conn.Accept until it fails with ErrNoRequest:
// ACCEPT hands out the oldest pending request, not the one a READY
// announced. Accept's other errors say whether to retry later (ErrRetry),
// go on after an unusable reply (ErrBadReply), or give up; see errors.go.
//
// The kernel installs the handshake socket as a new file descriptor in the
// calling process while it handles ACCEPT, and links the consumer's keyring
// into the process keyring of the calling thread. The daemon therefore owns
// Request.FD and must send DONE for it and then close it; see Conn.Accept
// for the threading rules.
//
// Raw attribute numbers live only in this package's decode and encode
// functions, named after their UAPI constants (include/uapi/linux/handshake.h),
// except those of the unmerged KeyUpdate proposal, which keyupdate.go
// exports in one block so that package fakekernel speaks the same ones.
package genl
