package genl

import (
	"testing"

	"github.com/mdlayher/genetlink"
)

// FuzzParsePolicy: the policy dump parser takes whatever the kernel (or
// anything on the netlink socket) returns without panicking, and what it
// accepts is a set of attribute numbers, each named by the dump.
func FuzzParsePolicy(f *testing.F) {
	for _, d := range [][]genetlink.Message{
		policyDump(f, 0x1f, cmdAccept, 0, acceptPolicy612),
		policyDump(f, 0x1f, cmdDone, 0, donePolicy612),
	} {
		// The fuzz input is the messages' data joined, each prefixed by
		// its 16-bit length.
		var in []byte
		for _, m := range d {
			in = append(in, byte(len(m.Data)>>8), byte(len(m.Data)))
			in = append(in, m.Data...)
		}
		f.Add(in, uint8(cmdAccept))
		f.Add(in, uint8(cmdDone))
	}
	f.Fuzz(func(t *testing.T, data []byte, cmd uint8) {
		var msgs []genetlink.Message
		for len(data) >= 2 {
			n := min(int(data[0])<<8|int(data[1]), len(data)-2)
			msgs = append(msgs, genetlink.Message{Data: data[2 : 2+n]})
			data = data[2+n:]
		}
		set, err := parsePolicy(msgs, cmd)
		if err != nil {
			return
		}
		for i := 1; i < len(set); i++ {
			if set[i-1] >= set[i] {
				t.Fatalf("set %v is not sorted without duplicates", set)
			}
		}
		for _, a := range set {
			if !set.Has(a) {
				t.Fatalf("set %v does not have its own %d", set, a)
			}
		}
	})
}
