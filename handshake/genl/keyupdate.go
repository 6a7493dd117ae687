package genl

import "strconv"

// The KeyUpdate upcall is a proposed kernel interface, not merged in any
// released kernel: "net/handshake: Support KeyUpdate message types",
// v7 (Alistair Francis, 2026-03-04; see docs/kernel-proposals.md). Every
// number it defines is in this block and nowhere else, since they may
// change before a merge; package fakekernel uses these exported names
// too. Conn enables the feature only when the running kernel's DONE policy
// has attribute KeyUpdateDoneSessionIDAttr with type NLA_U32 (see
// Capabilities.SessionID): the session-tags proposal uses the same DONE
// number for TAG, a string, and ACCEPT attribute 10 for MAX_TAGS.
const (
	// ClientKeyUpdate and ServerKeyUpdate are ACCEPT's MESSAGE_TYPE for
	// a KeyUpdate on a socket whose first handshake this side did as
	// client or server (HANDSHAKE_MSG_TYPE_{CLIENT,SERVER}KEYUPDATE).
	ClientKeyUpdate MessageType = 3
	ServerKeyUpdate MessageType = 4

	// KeyUpdateAcceptRequestAttr (HANDSHAKE_A_ACCEPT_KEY_UPDATE_REQUEST,
	// u32, a KeyUpdateType) and KeyUpdateAcceptSessionIDAttr
	// (HANDSHAKE_A_ACCEPT_SESSION_ID, u32) are in every ACCEPT reply of
	// a v7 kernel; both are 0 on a first handshake.
	KeyUpdateAcceptRequestAttr   = 10
	KeyUpdateAcceptSessionIDAttr = 11

	// KeyUpdateDoneSessionIDAttr (HANDSHAKE_A_DONE_SESSION_ID, u32,
	// NLA_U32 in the DONE policy) returns the id under which the daemon
	// keeps the session; the kernel hands it back on the next KeyUpdate
	// ACCEPT for that socket.
	KeyUpdateDoneSessionIDAttr = 4
)

// A KeyUpdateType says what a KeyUpdate request asks for
// (enum handshake_key_update_type).
type KeyUpdateType uint32

// Key update types, proposal v7.
const (
	KeyUpdateUnspec KeyUpdateType = 0 // a first handshake
	// KeyUpdateSend: send KeyUpdate(update_requested), rekey TX.
	KeyUpdateSend KeyUpdateType = 1
	// KeyUpdateReceived: the peer sent a KeyUpdate; rekey RX.
	KeyUpdateReceived KeyUpdateType = 2
	// KeyUpdateReceivedRequestUpdate: rekey RX, send
	// KeyUpdate(update_not_requested), rekey TX.
	KeyUpdateReceivedRequestUpdate KeyUpdateType = 3
)

func (t KeyUpdateType) String() string {
	switch t {
	case KeyUpdateUnspec:
		return "unspec"
	case KeyUpdateSend:
		return "send"
	case KeyUpdateReceived:
		return "received"
	case KeyUpdateReceivedRequestUpdate:
		return "received_request_update"
	}
	return "KeyUpdateType(" + strconv.FormatUint(uint64(t), 10) + ")"
}
