package main

import "github.com/tlshd-go/tlshd-go/handshake/genl"

// keyUpdateRow says (for probe's row "KeyUpdate upcalls") whether the kernel asks for KeyUpdates through the
// upcall (the unmerged proposal v7): only a DONE policy with attribute 4
// of type u32 (SESSION_ID) does.
func keyUpdateRow(caps genl.Capabilities) string {
	switch {
	case caps.SessionID:
		return "KeyUpdate upcalls: offered (DONE attribute 4 is SESSION_ID, u32: proposal v7); sessions are kept for them"
	case !caps.Probed:
		return "KeyUpdate upcalls: cannot tell (GETPOLICY failed); sessions are not kept"
	case caps.Tags:
		return "KeyUpdate upcalls: not offered (DONE attribute 4 is TAG, a string: the session-tags proposal)"
	}
	return "KeyUpdate upcalls: not offered (no DONE attribute 4 SESSION_ID)"
}
