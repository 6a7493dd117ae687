package genl

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string
		msgs    []genetlink.Message
		cmd     uint8
		want    AttrSet
		wantErr bool
	}{
		{
			name: "6.12 ACCEPT: only HANDLER_CLASS",
			msgs: policyDump(t, 0x1f, cmdAccept, 0, acceptPolicy612),
			cmd:  cmdAccept,
			want: AttrSet{acceptHandlerClass},
		},
		{
			name: "6.12 DONE",
			msgs: policyDump(t, 0x1f, cmdDone, 0, donePolicy612),
			cmd:  cmdDone,
			want: AttrSet{doneStatus, doneSockFD, doneRemoteAuth},
		},
		{
			name: "DONE with session tags (string, multi)",
			msgs: policyDump(t, 0x1f, cmdDone, 0, map[uint16][]policyAttr{
				0: append(append([]policyAttr{}, donePolicy612[0]...),
					policyAttr{num: 4, typ: unix.NL_ATTR_TYPE_NUL_STRING}),
			}),
			cmd:  cmdDone,
			want: AttrSet{1, 2, 3, 4},
		},
		{
			name: "the do-policy index is followed, nested policies ignored",
			msgs: policyDump(t, 0x1f, cmdDone, 1, map[uint16][]policyAttr{
				0: {{num: 1, typ: unix.NL_ATTR_TYPE_U8}},
				1: {
					{num: doneSockFD, typ: unix.NL_ATTR_TYPE_S32},
					{num: doneStatus, typ: unix.NL_ATTR_TYPE_U32},
					{num: 5, typ: unix.NL_ATTR_TYPE_NESTED},
				},
				2: {{num: 7, typ: unix.NL_ATTR_TYPE_U32}},
			}),
			cmd:  cmdDone,
			want: AttrSet{doneStatus, doneSockFD, 5},
		},
		{
			name:    "dump for another command",
			msgs:    policyDump(t, 0x1f, cmdAccept, 0, acceptPolicy612),
			cmd:     cmdDone,
			wantErr: true,
		},
		{
			name:    "empty dump",
			cmd:     cmdDone,
			wantErr: true,
		},
		{
			name:    "malformed attribute",
			msgs:    []genetlink.Message{{Data: []byte{8, 0, 9, 0}}},
			cmd:     cmdDone,
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePolicy(tt.msgs, tt.cmd)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePolicy() error = %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got.attrs); diff != "" {
				t.Errorf("parsePolicy() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPolicyDumpLayout pins the helper to the kernel's nesting, so that
// TestParsePolicy tests against the real format: CTRL_ATTR_POLICY holds a
// nest per policy index holding a nest per attribute, all flagged
// NLA_F_NESTED.
func TestPolicyDumpLayout(t *testing.T) {
	msgs := policyDump(t, 0x1f, cmdDone, 0, map[uint16][]policyAttr{
		0: {{num: doneSockFD, typ: unix.NL_ATTR_TYPE_S32}},
	})
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2", len(msgs))
	}
	want := cat(
		attr(unix.CTRL_ATTR_FAMILY_ID, u16(0x1f)),
		attr(netlink.Nested|unix.CTRL_ATTR_POLICY,
			attr(netlink.Nested|0,
				attr(netlink.Nested|doneSockFD,
					attr(unix.NL_POLICY_TYPE_ATTR_TYPE, u32(unix.NL_ATTR_TYPE_S32))))),
	)
	if diff := cmp.Diff(want, msgs[1].Data); diff != "" {
		t.Errorf("policy message mismatch (-want +got):\n%s", diff)
	}
	want = cat(
		attr(unix.CTRL_ATTR_FAMILY_ID, u16(0x1f)),
		attr(netlink.Nested|unix.CTRL_ATTR_OP_POLICY,
			attr(netlink.Nested|cmdDone,
				attr(unix.CTRL_ATTR_POLICY_DO, u32(0)))),
	)
	if diff := cmp.Diff(want, msgs[0].Data); diff != "" {
		t.Errorf("op-policy message mismatch (-want +got):\n%s", diff)
	}
}

// TestPolicyTypes: the type of each attribute comes through, so that
// DONE attribute 4 tells the KeyUpdate proposal (u32) from session tags
// (string).
func TestPolicyTypes(t *testing.T) {
	for _, tt := range []struct {
		name        string
		typ         uint32 // of DONE attribute 4; 0: absent
		sessionID   bool
		tags        bool
		wantType4   uint32
		wantAttr4In bool
	}{
		{name: "6.12: no attribute 4"},
		{name: "KeyUpdate v7: SESSION_ID u32", typ: unix.NL_ATTR_TYPE_U32, sessionID: true},
		{name: "session tags: TAG string", typ: unix.NL_ATTR_TYPE_NUL_STRING, tags: true},
		{name: "session tags: TAG plain string", typ: unix.NL_ATTR_TYPE_STRING, tags: true},
		{name: "some other type: neither", typ: unix.NL_ATTR_TYPE_U64},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pol := append([]policyAttr{}, donePolicy612[0]...)
			if tt.typ != 0 {
				pol = append(pol, policyAttr{num: 4, typ: tt.typ})
			}
			p, err := parsePolicy(policyDump(t, 0x1f, cmdDone, 0, map[uint16][]policyAttr{0: pol}), cmdDone)
			if err != nil {
				t.Fatal(err)
			}
			if p.types[doneSockFD] != unix.NL_ATTR_TYPE_S32 || p.types[doneStatus] != unix.NL_ATTR_TYPE_U32 {
				t.Errorf("types = %v, want SOCKFD s32 and STATUS u32", p.types)
			}
			var c Capabilities
			c.setDone(p)
			if c.SessionID != tt.sessionID || c.Tags != tt.tags {
				t.Errorf("SessionID, Tags = %v, %v; want %v, %v", c.SessionID, c.Tags, tt.sessionID, tt.tags)
			}
			if c.DoneAttrs.Has(4) != (tt.typ != 0) {
				t.Errorf("DoneAttrs = %v", c.DoneAttrs)
			}
		})
	}
}

// FuzzParsePolicy: any dump gives a policy or an error, never a panic,
// and a policy's attributes are sorted, unique and typed.
func FuzzParsePolicy(f *testing.F) {
	enc := func(msgs []genetlink.Message) []byte {
		var b []byte
		for _, m := range msgs {
			mb, err := m.MarshalBinary()
			if err != nil {
				f.Fatal(err)
			}
			b = append(b, byte(len(mb)), byte(len(mb)>>8))
			b = append(b, mb...)
		}
		return b
	}
	f.Add(enc(policyDump(f, 0x1f, cmdDone, 0, donePolicy612)))
	f.Add(enc(policyDump(f, 0x1f, cmdDone, 0, map[uint16][]policyAttr{0: append(append([]policyAttr{}, donePolicy612[0]...),
		policyAttr{num: 4, typ: unix.NL_ATTR_TYPE_U32})})))
	f.Add(enc(policyDump(f, 0x1f, cmdDone, 0, map[uint16][]policyAttr{0: append(append([]policyAttr{}, donePolicy612[0]...),
		policyAttr{num: 4, typ: unix.NL_ATTR_TYPE_NUL_STRING})})))
	f.Add(enc(policyDump(f, 0x1f, cmdAccept, 0, acceptPolicy612)))
	f.Fuzz(func(t *testing.T, b []byte) {
		// b is a series of messages, each a 16-bit length and then the
		// genetlink message.
		var msgs []genetlink.Message
		for len(b) >= 2 {
			n := int(b[0]) | int(b[1])<<8
			b = b[2:]
			n = min(n, len(b))
			var m genetlink.Message
			if m.UnmarshalBinary(b[:n]) == nil {
				msgs = append(msgs, m)
			}
			b = b[n:]
		}
		p, err := parsePolicy(msgs, cmdDone)
		if err != nil {
			return
		}
		for i, a := range p.attrs {
			if i > 0 && p.attrs[i-1] >= a {
				t.Fatalf("attributes not sorted and unique: %v", p.attrs)
			}
			if _, ok := p.types[a]; !ok {
				t.Fatalf("attribute %d has no type entry", a)
			}
		}
		var c Capabilities
		c.setDone(p)
		if c.SessionID && c.Tags {
			t.Fatal("both SessionID and Tags")
		}
		if c.SessionID && p.types[4] != unix.NL_ATTR_TYPE_U32 {
			t.Fatalf("SessionID with attribute 4 of type %d", p.types[4])
		}
	})
}

func TestAttrSetHas(t *testing.T) {
	s := AttrSet{1, 3, 9}
	for a, want := range map[uint16]bool{0: false, 1: true, 2: false, 3: true, 9: true, 10: false} {
		if got := s.Has(a); got != want {
			t.Errorf("Has(%d) = %v, want %v", a, got, want)
		}
	}
	if AttrSet(nil).Has(1) {
		t.Error("nil set has 1")
	}
}
