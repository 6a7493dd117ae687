package ktlstest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/ktls"
)

func TestSealOpen(t *testing.T) {
	for _, k := range []ktls.Keys{
		{Suite: 0x1301, Key: make([]byte, 16), IV: make([]byte, 12), Seq: 3},
		{Suite: 0x1302, Key: make([]byte, 32), IV: bytes.Repeat([]byte{1}, 12)},
		{Suite: 0x1303, Key: make([]byte, 32), IV: make([]byte, 12), Seq: 1 << 40},
	} {
		tx, err := NewDirection(k)
		if err != nil {
			t.Fatal(err)
		}
		rx, _ := NewDirection(k)
		var wire bytes.Buffer
		wire.Write(tx.Seal(23, []byte("one")))
		wire.Write(tx.Seal(21, []byte{1, 0}))
		if typ, data, err := rx.ReadRecord(&wire); err != nil || typ != 23 || string(data) != "one" {
			t.Fatalf("%#x: first record: %d %q %v", k.Suite, typ, data, err)
		}
		if typ, data, err := rx.ReadRecord(&wire); err != nil || typ != 21 || !bytes.Equal(data, []byte{1, 0}) {
			t.Fatalf("%#x: second record: %d %q %v", k.Suite, typ, data, err)
		}
		// Out of sequence: the nonce no longer matches.
		wire.Write(tx.Seal(23, []byte("x")))
		stale, _ := NewDirection(k)
		if _, _, err := stale.ReadRecord(&wire); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%#x: out-of-sequence record opened: %v", k.Suite, err)
		}
	}
}
