package ktls

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// header is {u16 version, u16 cipher_type} in host byte order.
func header(cipher uint16) []byte {
	b := binary.NativeEndian.AppendUint16(nil, 0x0304)
	return binary.NativeEndian.AppendUint16(b, cipher)
}

// Keys with recognisable bytes: the write_iv counts 0xa0.., keys 0x00..
// and the sequence number 0x0102030405060708.
var (
	testIV  = "a0a1a2a3 a4a5a6a7a8a9aaab"
	key16   = "000102030405060708090a0b0c0d0e0f"
	key32   = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	testSeq = uint64(0x0102030405060708)
)

func TestCryptoInfoLayout(t *testing.T) {
	tests := []struct {
		name  string
		suite uint16
		key   string
		want  []byte // after the header
		cip   uint16
		size  int
	}{
		{
			// struct tls12_crypto_info_aes_gcm_128: iv[8] key[16] salt[4] rec_seq[8]
			name: "TLS_AES_128_GCM_SHA256", suite: 0x1301, key: key16, cip: 51, size: 40,
			want: unhex(t, "a4a5a6a7a8a9aaab"+key16+"a0a1a2a3"+"0102030405060708"),
		},
		{
			// struct tls12_crypto_info_aes_gcm_256: iv[8] key[32] salt[4] rec_seq[8]
			name: "TLS_AES_256_GCM_SHA384", suite: 0x1302, key: key32, cip: 52, size: 56,
			want: unhex(t, "a4a5a6a7a8a9aaab"+key32+"a0a1a2a3"+"0102030405060708"),
		},
		{
			// struct tls12_crypto_info_chacha20_poly1305: iv[12] key[32] salt[0] rec_seq[8]
			name: "TLS_CHACHA20_POLY1305_SHA256", suite: 0x1303, key: key32, cip: 54, size: 56,
			want: unhex(t, "a0a1a2a3a4a5a6a7a8a9aaab"+key32+"0102030405060708"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := Keys{Suite: tt.suite, Key: unhex(t, tt.key), IV: unhex(t, testIV), Seq: testSeq}
			got, err := CryptoInfo(k)
			if err != nil {
				t.Fatal(err)
			}
			want := append(header(tt.cip), tt.want...)
			if len(got) != tt.size {
				t.Errorf("size %d, want %d", len(got), tt.size)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("CryptoInfo() =\n%x\nwant\n%x", got, want)
			}
			back, err := ParseCryptoInfo(got)
			if err != nil {
				t.Fatalf("ParseCryptoInfo: %v", err)
			}
			if diff := cmp.Diff(k, back); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCryptoInfoErrors(t *testing.T) {
	iv := unhex(t, testIV)
	tests := []struct {
		name string
		k    Keys
	}{
		{"unknown suite", Keys{Suite: 0x1304, Key: unhex(t, key16), IV: iv}},
		{"TLS 1.2 suite", Keys{Suite: 0xc02f, Key: unhex(t, key16), IV: iv}},
		{"short key", Keys{Suite: 0x1301, Key: unhex(t, key16)[:15], IV: iv}},
		{"256-bit key for AES-128", Keys{Suite: 0x1301, Key: unhex(t, key32), IV: iv}},
		{"128-bit key for ChaCha20", Keys{Suite: 0x1303, Key: unhex(t, key16), IV: iv}},
		{"8-byte iv", Keys{Suite: 0x1301, Key: unhex(t, key16), IV: iv[:8]}},
		{"no iv", Keys{Suite: 0x1302, Key: unhex(t, key32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := CryptoInfo(tt.k); err == nil {
				t.Fatalf("CryptoInfo() = %x, want error", b)
			} else if !strings.HasPrefix(err.Error(), "ktls: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestParseCryptoInfoErrors(t *testing.T) {
	good, err := CryptoInfo(Keys{Suite: 0x1301, Key: unhex(t, key16), IV: unhex(t, testIV)})
	if err != nil {
		t.Fatal(err)
	}
	tls12 := append([]byte(nil), good...)
	binary.NativeEndian.PutUint16(tls12, 0x0303)
	ccm := append([]byte(nil), good...)
	binary.NativeEndian.PutUint16(ccm[2:], 53)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"header only", good[:4]},
		{"short", good[:39]},
		{"long", append(append([]byte(nil), good...), 0)},
		{"TLS 1.2", tls12},
		{"AES-CCM", ccm},
		{"GCM-128 body with GCM-256 type", append(header(52), good[4:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, err := ParseCryptoInfo(tt.b); err == nil {
				t.Fatalf("ParseCryptoInfo() = %+v, want error", k)
			}
		})
	}
}

// FuzzParseCryptoInfo checks that parsing never panics and that whatever
// parses re-encodes to the same bytes: one encoding per key set.
func FuzzParseCryptoInfo(f *testing.F) {
	for _, suite := range []uint16{0x1301, 0x1302, 0x1303} {
		s, _ := suiteFor(suite)
		b, err := CryptoInfo(Keys{Suite: suite, Key: make([]byte, s.keyLen), IV: make([]byte, 12), Seq: 7})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{4, 3, 51, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseCryptoInfo(b)
		if err != nil {
			return
		}
		again, err := CryptoInfo(k)
		if err != nil {
			t.Fatalf("parsed keys %+v do not encode: %v", k, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, parsed %x", again, b)
		}
	})
}

func TestKeysZero(t *testing.T) {
	k := Keys{Suite: 0x1301, Key: []byte{1, 2, 3}, IV: []byte{4, 5, 6}}
	k.Zero()
	for _, b := range append(k.Key, k.IV...) {
		if b != 0 {
			t.Fatalf("after Zero: key % x, IV % x", k.Key, k.IV)
		}
	}
}
