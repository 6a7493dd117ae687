package genl

import (
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// testFamily is a handshake family as the kernel describes it: groups
// "none" and "tlshd" with dynamic IDs.
var testFamily = genetlink.Family{
	ID:      0x1f,
	Name:    familyName,
	Version: familyVersion,
	Groups: []genetlink.MulticastGroup{
		{Name: "none", ID: 8},
		{Name: "tlshd", ID: 9},
	},
}

// encodeAcceptReply encodes r the way the kernel's tls_handshake_accept
// does (net/handshake/tlshd.c): fixed attributes first, then the optional
// ones, then identities and certificates. Unknown types are encoded as
// empty attributes, so that decoding the result yields r again.
func encodeAcceptReply(t testing.TB, r Request) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Int32(acceptSockFD, r.FD)
	if r.HandlerClass != 0 {
		ae.Uint32(acceptHandlerClass, r.HandlerClass)
	}
	if r.MessageType != 0 {
		ae.Uint32(acceptMessageType, uint32(r.MessageType))
	}
	if r.Timeout != 0 {
		ae.Uint32(acceptTimeout, uint32(r.Timeout.Milliseconds()))
	}
	if r.Auth != 0 {
		ae.Uint32(acceptAuthMode, uint32(r.Auth))
	}
	if r.PeerName != "" {
		ae.String(acceptPeername, r.PeerName)
	}
	if r.Keyring != 0 {
		ae.Int32(acceptKeyring, r.Keyring)
	}
	for _, id := range r.PeerIdentities {
		ae.Int32(acceptPeerIdentity, id)
	}
	for _, c := range r.Certificates {
		ae.Nested(acceptCertificate, func(nae *netlink.AttributeEncoder) error {
			nae.Int32(x509Cert, c.Cert)
			nae.Int32(x509Privkey, c.PrivKey)
			return nil
		})
	}
	if r.KeyUpdate != 0 {
		ae.Uint32(KeyUpdateAcceptRequestAttr, uint32(r.KeyUpdate))
	}
	if r.SessionID != 0 {
		ae.Uint32(KeyUpdateAcceptSessionIDAttr, r.SessionID)
	}
	for _, u := range r.Unknown {
		ae.Bytes(u, nil)
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatalf("encoding ACCEPT reply: %v", err)
	}
	return b
}

// policyAttr describes one attribute of a dumped policy.
type policyAttr struct {
	num      uint16
	typ      uint32 // NL_ATTR_TYPE_*
	min, max uint64 // for ranged integers; both 0 for none
}

// policyDump builds a GETPOLICY reply for one operation as
// ctrl_dumppolicy (net/netlink/genetlink.c) and netlink_policy_dump_write
// (net/netlink/policy.c) write it: one message mapping the operation to
// its do-policy index, then one message per attribute of each policy,
// every nest with NLA_F_NESTED set (nla_nest_start).
func policyDump(t testing.TB, family uint16, cmd uint8, doIdx uint16, policies map[uint16][]policyAttr) []genetlink.Message {
	t.Helper()
	msg := func(fn func(ae *netlink.AttributeEncoder)) genetlink.Message {
		ae := netlink.NewAttributeEncoder()
		ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, family)
		fn(ae)
		b, err := ae.Encode()
		if err != nil {
			t.Fatalf("encoding policy dump: %v", err)
		}
		return genetlink.Message{
			Header: genetlink.Header{Command: unix.CTRL_CMD_GETPOLICY, Version: 2},
			Data:   b,
		}
	}
	msgs := []genetlink.Message{msg(func(ae *netlink.AttributeEncoder) {
		ae.Nested(unix.CTRL_ATTR_OP_POLICY, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(uint16(cmd), func(ae *netlink.AttributeEncoder) error {
				ae.Uint32(unix.CTRL_ATTR_POLICY_DO, uint32(doIdx))
				return nil
			})
			return nil
		})
	})}
	for idx := uint16(0); int(idx) < len(policies); idx++ {
		for _, a := range policies[idx] {
			msgs = append(msgs, msg(func(ae *netlink.AttributeEncoder) {
				ae.Nested(unix.CTRL_ATTR_POLICY, func(ae *netlink.AttributeEncoder) error {
					ae.Nested(idx, func(ae *netlink.AttributeEncoder) error {
						ae.Nested(a.num, func(ae *netlink.AttributeEncoder) error {
							if a.min != 0 || a.max != 0 {
								ae.Uint64(unix.NL_POLICY_TYPE_ATTR_MIN_VALUE_U, a.min)
								ae.Uint64(unix.NL_POLICY_TYPE_ATTR_MAX_VALUE_U, a.max)
							}
							ae.Uint32(unix.NL_POLICY_TYPE_ATTR_TYPE, a.typ)
							return nil
						})
						return nil
					})
					return nil
				})
			}))
		}
	}
	return msgs
}

// Policies as net/handshake/genl.c declares them: ACCEPT's request
// policy holds only HANDLER_CLASS (NLA_POLICY_MAX(NLA_U32, 2) in 6.12);
// DONE's holds STATUS, SOCKFD and REMOTE_AUTH.
var (
	acceptPolicy612 = map[uint16][]policyAttr{
		0: {{num: acceptHandlerClass, typ: unix.NL_ATTR_TYPE_U32, min: 0, max: 2}},
	}
	donePolicy612 = map[uint16][]policyAttr{
		0: {
			{num: doneStatus, typ: unix.NL_ATTR_TYPE_U32},
			{num: doneSockFD, typ: unix.NL_ATTR_TYPE_S32},
			{num: doneRemoteAuth, typ: unix.NL_ATTR_TYPE_U32},
		},
	}
)
