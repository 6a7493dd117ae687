package ktls

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMaxPayload(t *testing.T) {
	for limit, want := range map[int]uint16{0: 0, 64: 63, 512: 511, 16384: 16383, 16385: 0, 20000: 0} {
		if got := MaxPayload(limit); got != want {
			t.Errorf("MaxPayload(%d) = %d, want %d", limit, got, want)
		}
	}
}

// TestInstallMaxPayload documents the kernel: with TLS_TX_MAX_PAYLOAD_LEN
// (Linux 7.3) a write larger than the limit leaves as records whose
// plaintext is at most the limit, seen on the wire by a peer without
// kTLS; without it (6.12) Install fails at that step with ErrNoMaxPayload,
// before any key is installed; without a TLS ULP (this development host)
// at TCP_ULP.
func TestInstallMaxPayload(t *testing.T) {
	const max = 511 // a peer's record_size_limit of 512
	a, b := tcpPair(t)
	k1, k2 := testKeys(0x1301, 0x11), testKeys(0x1301, 0x22)
	err := Install(a, k1, k2, Options{TxMaxPayload: max})
	var ie *InstallError
	switch {
	case err == nil:
	case errors.Is(err, ErrNoKTLS):
		t.Logf("no kTLS on this host: %v", err)
		return
	case errors.As(err, &ie) && ie.Step == StepMaxPayload && errors.Is(err, ErrNoMaxPayload) && errors.Is(err, unix.ENOPROTOOPT):
		t.Logf("this kernel refuses a record size limit: %v", err)
		return
	default:
		t.Fatalf("Install() = %v", err)
	}
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := SendRecord(a, 23, data); err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(b), "peer")
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	block, _ := aes.NewCipher(k1.Key)
	aead, _ := cipher.NewGCM(block)
	var got []byte
	for seq := uint64(0); len(got) < len(data); seq++ {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(peer, hdr); err != nil {
			t.Fatal(err)
		}
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		if n > max+1+aead.Overhead() {
			t.Fatalf("record %d carries %d bytes of ciphertext, more than %d of plaintext allow", seq, n, max)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(peer, body); err != nil {
			t.Fatal(err)
		}
		nonce := bytes.Clone(k1.IV)
		for i := range 8 {
			nonce[4+i] ^= byte(seq >> (56 - 8*i))
		}
		inner, err := aead.Open(nil, nonce, body, hdr)
		if err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		got = append(got, inner[:len(inner)-1]...)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("plaintext differs (%d bytes)", len(got))
	}
	t.Logf("%d bytes crossed in records of at most %d bytes of plaintext", len(data), max)
}
