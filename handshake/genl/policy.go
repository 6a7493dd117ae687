package genl

import (
	"fmt"
	"slices"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// An AttrSet is a sorted set of attribute numbers.
type AttrSet []uint16

// Has reports whether s contains a.
func (s AttrSet) Has(a uint16) bool {
	_, ok := slices.BinarySearch(s, a)
	return ok
}

// Capabilities is what NewConn learned about the kernel's handshake
// family.
type Capabilities struct {
	FamilyID uint16
	Version  uint8

	// Probed is true when both policies below came from the kernel
	// (CTRL_CMD_GETPOLICY). When false, they are the fallback every
	// kernel with the family accepts, and ProbeErr says why the probe
	// failed.
	Probed   bool
	ProbeErr error

	// AcceptAttrs are the attributes ACCEPT's request policy accepts.
	// Every released kernel accepts only HANDLER_CLASS (2): the policy
	// covers what the agent sends, not what the reply carries, so it
	// does not tell whether replies carry KEYRING.
	AcceptAttrs AttrSet

	// DoneAttrs are the attributes DONE accepts; Conn.Done sends no
	// other.
	DoneAttrs AttrSet

	// SessionID is true when the kernel speaks the KeyUpdate upcall
	// (proposal v7, keyupdate.go): its DONE policy has attribute 4
	// (KeyUpdateDoneSessionIDAttr) with type u32. Only then does Accept
	// decode ACCEPT attributes 10 and 11 into Request.KeyUpdate and
	// Request.SessionID, and Done send Done.SessionID.
	SessionID bool

	// Tags is true when DONE's attribute 4 is a string: the session-tags
	// proposal's TAG, which this package does not send. SessionID and
	// Tags are never both true; both are false when the policy lacks
	// attribute 4 or could not be probed.
	Tags bool
}

func (c Capabilities) clone() Capabilities {
	c.AcceptAttrs = slices.Clone(c.AcceptAttrs)
	c.DoneAttrs = slices.Clone(c.DoneAttrs)
	return c
}

// Attributes every kernel with net/handshake accepts (v6.5 onward), used
// when the policy cannot be probed.
var (
	fallbackAccept = AttrSet{acceptHandlerClass}
	fallbackDone   = AttrSet{doneStatus, doneSockFD, doneRemoteAuth}
)

// An opPolicy is one operation's do-policy: the attributes it accepts
// and their types (NL_ATTR_TYPE_*).
type opPolicy struct {
	attrs AttrSet
	types map[uint16]uint32
}

// probe asks nlctrl for the do-policies of ACCEPT and DONE.
func probe(c *genetlink.Conn, family uint16) (accept, done opPolicy, err error) {
	if accept, err = probeOp(c, family, cmdAccept); err != nil {
		return accept, done, fmt.Errorf("genl: GETPOLICY for ACCEPT: %w", err)
	}
	if done, err = probeOp(c, family, cmdDone); err != nil {
		return accept, done, fmt.Errorf("genl: GETPOLICY for DONE: %w", err)
	}
	return accept, done, nil
}

// setDone records what a probed DONE policy says, attribute 4's type
// included: u32 is the KeyUpdate proposal's SESSION_ID, a string the
// session-tags proposal's TAG.
func (c *Capabilities) setDone(p opPolicy) {
	c.DoneAttrs = p.attrs
	if !p.attrs.Has(KeyUpdateDoneSessionIDAttr) {
		return
	}
	switch p.types[KeyUpdateDoneSessionIDAttr] {
	case unix.NL_ATTR_TYPE_U32:
		c.SessionID = true
	case unix.NL_ATTR_TYPE_STRING, unix.NL_ATTR_TYPE_NUL_STRING:
		c.Tags = true
	}
}

// probeOp dumps the policy of one operation (CTRL_CMD_GETPOLICY with
// CTRL_ATTR_OP, Linux ≥ 5.10) and returns the attributes its do-policy
// accepts.
func probeOp(c *genetlink.Conn, family uint16, cmd uint8) (opPolicy, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, family)
	ae.Uint32(unix.CTRL_ATTR_OP, uint32(cmd))
	b, err := ae.Encode()
	if err != nil {
		return opPolicy{}, err
	}
	req := genetlink.Message{
		Header: genetlink.Header{Command: unix.CTRL_CMD_GETPOLICY, Version: 1},
		Data:   b,
	}
	msgs, err := c.Execute(req, unix.GENL_ID_CTRL, netlink.Request|netlink.Dump)
	if err != nil {
		return opPolicy{}, err
	}
	return parsePolicy(msgs, cmd)
}

// parsePolicy reads a GETPOLICY dump, as net/netlink/genetlink.c
// (ctrl_dumppolicy) and net/netlink/policy.c (netlink_policy_dump_write)
// write it, and returns the attribute numbers of cmd's do-policy and
// their types.
//
// The dump is a series of CTRL_CMD_GETPOLICY messages. One maps the
// operation to policy indices:
//
//	CTRL_ATTR_OP_POLICY { <cmd> { CTRL_ATTR_POLICY_DO: u32 index, [CTRL_ATTR_POLICY_DUMP: u32 index] } }
//
// and each of the others describes one attribute of one policy:
//
//	CTRL_ATTR_POLICY { <policy index> { <attribute> { NL_POLICY_TYPE_ATTR_TYPE: u32, ... } } }
//
// An attribute whose type is missing or malformed gets type 0
// (NL_ATTR_TYPE_INVALID), which matches no type a caller looks for.
// Attributes the policy rejects (NLA_UNSPEC holes, NLA_REJECT) are not
// listed, so the listed numbers are exactly the accepted ones. The index
// is followed rather than assumed to be 0, because a policy with nested
// policies dumps those under further indices.
func parsePolicy(msgs []genetlink.Message, cmd uint8) (opPolicy, error) {
	type attrType struct {
		num uint16
		typ uint32
	}
	var (
		doIdx    uint32
		haveDo   bool
		policies = make(map[uint16][]attrType)
	)
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return opPolicy{}, err
		}
		for ad.Next() {
			switch ad.Type() {
			case unix.CTRL_ATTR_OP_POLICY:
				ad.Nested(func(ops *netlink.AttributeDecoder) error {
					for ops.Next() {
						op := ops.Type()
						ops.Nested(func(idx *netlink.AttributeDecoder) error {
							for idx.Next() {
								if idx.Type() == unix.CTRL_ATTR_POLICY_DO && op == uint16(cmd) {
									doIdx, haveDo = idx.Uint32(), true
								}
							}
							return nil
						})
					}
					return nil
				})
			case unix.CTRL_ATTR_POLICY:
				ad.Nested(func(pols *netlink.AttributeDecoder) error {
					for pols.Next() {
						pi := pols.Type()
						pols.Nested(func(attrs *netlink.AttributeDecoder) error {
							for attrs.Next() {
								a := attrType{num: attrs.Type()}
								attrs.Nested(func(desc *netlink.AttributeDecoder) error {
									for desc.Next() {
										if desc.Type() == unix.NL_POLICY_TYPE_ATTR_TYPE && len(desc.Bytes()) == 4 {
											a.typ = desc.Uint32()
										}
									}
									return nil
								})
								policies[pi] = append(policies[pi], a)
							}
							return nil
						})
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			return opPolicy{}, fmt.Errorf("decoding policy dump: %w", err)
		}
	}
	if !haveDo {
		return opPolicy{}, fmt.Errorf("policy dump has no do-policy for command %d", cmd)
	}
	if doIdx > 0xffff {
		return opPolicy{}, fmt.Errorf("policy dump names policy index %d", doIdx)
	}
	p := opPolicy{types: make(map[uint16]uint32)}
	for _, a := range policies[uint16(doIdx)] {
		p.attrs = append(p.attrs, a.num)
		p.types[a.num] = a.typ
	}
	slices.Sort(p.attrs)
	p.attrs = slices.Compact(p.attrs)
	return p, nil
}
