package tlsrecord

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
)

func keyed(t *testing.T, suite uint16, keyLen int) *Protection {
	t.Helper()
	var p Protection
	if err := p.Init(suite, bytes.Repeat([]byte{1}, keyLen), bytes.Repeat([]byte{2}, 12)); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestRoundTrip(t *testing.T) {
	for _, s := range []struct {
		suite  uint16
		keyLen int
	}{{0x1301, 16}, {0x1302, 32}, {0x1303, 32}} {
		p := keyed(t, s.suite, s.keyLen)
		rec := p.Seal(nil, 7, TypeHandshake, []byte("hello"), 3)
		if rec[0] != TypeApplicationData || int(rec[3])<<8|int(rec[4]) != len(rec)-HeaderLen || len(rec) != HeaderLen+5+1+3+TagLen {
			t.Fatalf("suite %#x: record %x", s.suite, rec)
		}
		typ, data, err := p.Open(7, rec[:HeaderLen], rec[HeaderLen:])
		if err != nil || typ != TypeHandshake || string(data) != "hello" {
			t.Fatalf("suite %#x: open %d %q %v", s.suite, typ, data, err)
		}
	}
}

// TestNonce: the nonce is the IV XORed with the sequence number in its
// last 8 bytes (RFC 8446, 5.3), checked against a GCM built here.
func TestNonce(t *testing.T) {
	key, iv := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 12)
	p := keyed(t, 0x1301, 16)
	rec := p.Seal(nil, 0x0102030405060708, TypeAlert, []byte{2, 40}, 0)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := bytes.Clone(iv)
	for i, b := range []byte{1, 2, 3, 4, 5, 6, 7, 8} {
		nonce[4+i] ^= b
	}
	plain, err := gcm.Open(nil, nonce, rec[HeaderLen:], rec[:HeaderLen])
	if err != nil || !bytes.Equal(plain, []byte{2, 40, TypeAlert}) {
		t.Fatalf("independent open: %x %v", plain, err)
	}
}

func TestOpenErrors(t *testing.T) {
	p := keyed(t, 0x1301, 16)
	open := func(rec []byte, seq uint64) error {
		_, _, err := p.Open(seq, rec[:HeaderLen], bytes.Clone(rec[HeaderLen:]))
		return err
	}
	rec := p.Seal(nil, 1, TypeHandshake, []byte("x"), 0)
	if err := open(rec, 2); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong sequence: %v", err)
	}
	bad := bytes.Clone(rec)
	bad[len(bad)-1] ^= 1
	if err := open(bad, 1); !errors.Is(err, ErrDecrypt) {
		t.Errorf("bad tag: %v", err)
	}
	if err := open(rec[:HeaderLen+TagLen], 1); !errors.Is(err, ErrDecrypt) {
		t.Errorf("short record: %v", err)
	}
	if err := open(p.Seal(nil, 1, 0, nil, 5), 1); !errors.Is(err, ErrNoContentType) {
		t.Errorf("all padding: %v", err)
	}
	if err := open(p.Seal(nil, 1, TypeApplicationData, make([]byte, MaxPlaintext), 0), 1); err != nil {
		t.Errorf("largest record: %v", err)
	}
	if err := open(p.Seal(nil, 1, TypeApplicationData, make([]byte, MaxPlaintext), 1), 1); !errors.Is(err, ErrOverflow) {
		t.Errorf("padding past the limit: %v", err)
	}
	if err := new(Protection).Init(0x1304, make([]byte, 16), make([]byte, 12)); err == nil {
		t.Error("unknown suite accepted")
	}
	if err := new(Protection).Init(0x1301, make([]byte, 16), make([]byte, 8)); err == nil {
		t.Error("short IV accepted")
	}
	p.Zero()
	if p.Ready() {
		t.Error("ready after Zero")
	}
}
