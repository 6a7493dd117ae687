package session

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

func testState(suite tls13.CipherSuite, n int) *State {
	return &State{Suite: suite, Client: true, TX: bytes.Repeat([]byte{1}, n), RX: bytes.Repeat([]byte{2}, n), TXGen: 7, RXGen: 1 << 31, Socket: 1<<40 + 5}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, s := range []*State{
		testState(tls13.TLS_AES_128_GCM_SHA256, 32),
		testState(tls13.TLS_AES_256_GCM_SHA384, 48),
		{Suite: tls13.TLS_CHACHA20_POLY1305_SHA256, TX: make([]byte, 32), RX: make([]byte, 32)},
	} {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got State
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if got.Suite != s.Suite || got.Client != s.Client || got.TXGen != s.TXGen || got.RXGen != s.RXGen || got.Socket != s.Socket ||
			!bytes.Equal(got.TX, s.TX) || !bytes.Equal(got.RX, s.RX) {
			t.Errorf("round trip: %+v, want %+v", got, s)
		}
		// The secrets are copies: zeroing the payload leaves them.
		clear(b)
		if !bytes.Equal(got.TX, s.TX) {
			t.Error("decoded secret aliases the payload")
		}
	}
}

func TestMarshalRejects(t *testing.T) {
	bad := []*State{
		{Suite: 0x1304, TX: make([]byte, 32), RX: make([]byte, 32)},
		{Suite: tls13.TLS_AES_256_GCM_SHA384, TX: make([]byte, 32), RX: make([]byte, 48)},
	}
	for _, s := range bad {
		if _, err := s.MarshalBinary(); err == nil {
			t.Errorf("%+v marshalled", s)
		}
	}
	good, _ := testState(tls13.TLS_AES_128_GCM_SHA256, 32).MarshalBinary()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"short":     good[:headerLen+40],
		"long":      append(bytes.Clone(good), 0),
		"version":   append([]byte{2}, good[1:]...),
		"flags":     append([]byte{1, 2}, good[2:]...),
		"suite":     append([]byte{1, 1, 0x13, 0x05}, good[4:]...),
		"suite384":  append([]byte{1, 1, 0x13, 0x02}, good[4:]...),
		"no secret": good[:headerLen],
	} {
		var s State
		if err := s.UnmarshalBinary(b); err == nil {
			t.Errorf("%s: decoded %+v", name, s)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []*State{testState(tls13.TLS_AES_128_GCM_SHA256, 32), testState(tls13.TLS_AES_256_GCM_SHA384, 48)} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0x13, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %x but cannot encode it: %v", b, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%x decodes and encodes to %x", b, again)
		}
	})
}

// storeContract is what the daemon relies on of any Store.
func storeContract(t *testing.T, st Store) {
	t.Helper()
	a := testState(tls13.TLS_AES_128_GCM_SHA256, 32)
	id1, err := st.Put(a)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := st.Put(testState(tls13.TLS_AES_256_GCM_SHA384, 48))
	if err != nil {
		t.Fatal(err)
	}
	if id1 == 0 || id2 == 0 || id1 == id2 {
		t.Fatalf("ids %d and %d", id1, id2)
	}
	got, err := st.Get(id1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.TX, a.TX) || got.TXGen != a.TXGen || got.Suite != a.Suite {
		t.Fatalf("Get %+v, want %+v", got, a)
	}
	got.Zero()
	if again, err := st.Get(id1); err != nil || !bytes.Equal(again.TX, a.TX) {
		t.Fatalf("zeroing a State from Get changed the stored one: %v", err)
	}
	if err := st.Delete(id1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(id1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := st.Delete(id1); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	for _, id := range []uint32{0, 1<<32 - 1} {
		if _, err := st.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%d): %v, want ErrNotFound", id, err)
		}
	}
	if _, err := st.Get(id2); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	st.Delete(id2)
}

func TestMemory(t *testing.T) {
	var m Memory
	storeContract(t, &m)
	if m.Len() != 0 {
		t.Errorf("%d states left", m.Len())
	}
}
