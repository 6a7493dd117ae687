package tlsrecord

import (
	"bytes"
	"errors"
	"testing"
)

// Tests written to kill mutants that lived in tests/mutation (issue 11).

// TestOpenBoundaries pins each bound of Open at both of its sides.
func TestOpenBoundaries(t *testing.T) {
	p := keyed(t, 0x1301, 16)
	open := func(rec []byte) (uint8, []byte, error) {
		return p.Open(4, rec[:HeaderLen], bytes.Clone(rec[HeaderLen:]))
	}
	// An empty application-data record (RFC 8446, 5.1 allows it): the
	// body is the tag and the content type, 17 bytes.
	rec := p.Seal(nil, 4, TypeApplicationData, nil, 0)
	if len(rec) != HeaderLen+TagLen+1 {
		t.Fatalf("empty record of %d bytes", len(rec))
	}
	if typ, data, err := open(rec); err != nil || typ != TypeApplicationData || len(data) != 0 {
		t.Errorf("empty record: %d %x %v; want type %d, no data", typ, data, err, TypeApplicationData)
	}
	// Padding after the content type is stripped (RFC 8446, 5.4), also
	// when there is no content.
	if typ, data, err := open(p.Seal(nil, 4, TypeAlert, []byte{1, 0}, 7)); err != nil || typ != TypeAlert || !bytes.Equal(data, []byte{1, 0}) {
		t.Errorf("padded alert: %d %x %v", typ, data, err)
	}
	if typ, data, err := open(p.Seal(nil, 4, TypeApplicationData, nil, 1)); err != nil || typ != TypeApplicationData || len(data) != 0 {
		t.Errorf("padded empty record: %d %x %v", typ, data, err)
	}
	// The inner plaintext may be 2^14+1 bytes (content, type and
	// padding), not one more, however it is made up.
	for _, tc := range []struct {
		content, padding int
		want             error
	}{
		{MaxPlaintext, 0, nil},
		{MaxPlaintext - 1, 1, nil},
		{0, MaxPlaintext, nil},
		{MaxPlaintext - 1, 2, ErrOverflow},
		{0, MaxPlaintext + 1, ErrOverflow},
	} {
		typ, data, err := open(p.Seal(nil, 4, TypeHandshake, make([]byte, tc.content), tc.padding))
		if !errors.Is(err, tc.want) || err == nil && (typ != TypeHandshake || len(data) != tc.content) {
			t.Errorf("%d bytes of content and %d of padding: %d, %d bytes, %v; want %v", tc.content, tc.padding, typ, len(data), err, tc.want)
		}
	}
	// A body one byte short of the tag and the type never decrypts.
	if _, _, err := open(rec[:len(rec)-1]); !errors.Is(err, ErrDecrypt) {
		t.Errorf("16-byte body: %v", err)
	}
}
