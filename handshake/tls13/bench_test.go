package tls13

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// pipeHalf is one direction of an in-memory, buffered connection: writes
// never block, reads wait for data. Unlike net.Pipe it lets a side send
// its whole flight before the peer reads, as a socket does.
type pipeHalf struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte
	closed bool
}

func newPipeHalf() *pipeHalf {
	h := &pipeHalf{}
	h.cond.L = &h.mu
	return h
}

type memConn struct {
	r, w *pipeHalf
}

func memPipe() (net.Conn, net.Conn) {
	a, b := newPipeHalf(), newPipeHalf()
	return &memConn{r: a, w: b}, &memConn{r: b, w: a}
}

func (c *memConn) Read(p []byte) (int, error) {
	h := c.r
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.buf) == 0 {
		if h.closed {
			return 0, io.EOF
		}
		h.cond.Wait()
	}
	n := copy(p, h.buf)
	h.buf = h.buf[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	h := c.w
	h.mu.Lock()
	h.buf = append(h.buf, p...)
	h.mu.Unlock()
	h.cond.Signal()
	return len(p), nil
}

func (c *memConn) Close() error {
	for _, h := range []*pipeHalf{c.r, c.w} {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.cond.Broadcast()
	}
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return nil }
func (c *memConn) RemoteAddr() net.Addr               { return nil }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// BenchmarkPSKHandshake measures a full psk_dhe_ke handshake, client and
// server in memory over X25519 with TLS_AES_128_GCM_SHA256, beside the
// cryptographic work such a handshake cannot avoid. "floor" and "engine"
// report each alone (B/op is per client+server pair); "ratio" alternates
// one of each per iteration, so that both see the same machine load, and
// reports x-floor, the engine's cost as a multiple of the floor.
func BenchmarkPSKHandshake(b *testing.B) {
	psk := testPSK("NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:host nqn.2024-01.io.example:subsys", crypto.SHA256)
	ccfg := &Config{PSKs: []PSK{psk}, Groups: []Group{X25519}, CipherSuites: []CipherSuite{TLS_AES_128_GCM_SHA256}}
	scfg := &Config{GetPSK: keyring(psk), Groups: []Group{X25519}}
	ctx := context.Background()
	errc := make(chan error, 1)
	handshake := func(b *testing.B) {
		cc, sc := memPipe()
		client, server := Client(cc, ccfg), Server(sc, scfg)
		go func() { errc <- server.Handshake(ctx) }()
		if err := client.Handshake(ctx); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}

	b.Run("floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cryptoFloor(psk.Key)
		}
	})
	b.Run("engine", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			handshake(b)
		}
	})
	b.Run("ratio", func(b *testing.B) {
		var floor, engine time.Duration
		for b.Loop() {
			t0 := time.Now()
			cryptoFloor(psk.Key)
			t1 := time.Now()
			handshake(b)
			floor += t1.Sub(t0)
			engine += time.Since(t1)
		}
		b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "ns-floor/op")
		b.ReportMetric(float64(engine.Nanoseconds())/float64(b.N), "ns-engine/op")
		b.ReportMetric(float64(engine)/float64(floor), "x-floor")
	})
}

// cryptoFloor performs the primitive operations of one client+server
// psk_dhe_ke handshake (RFC 8446, 7.1), with the same sizes, straight
// from crypto/*: per side one X25519 key generation and one ECDH, three
// HKDF-Extract, the Derive-Secret and HKDF-Expand-Label calls of the
// binder, handshake and application secrets and of the handshake keys,
// three HMACs (binder, two Finished), incremental transcript hashing with
// a digest at each point the schedule needs one, two AEAD set-ups, and
// one seal and one open (the server's EE+Finished record and the client's
// Finished record are each sealed once and opened once in all).
func cryptoFloor(psk []byte) {
	msgs := make([]byte, 600) // ClientHello, ServerHello, EE+Finished, Finished: about this size
	var keys [2]*ecdh.PrivateKey
	for i := range keys {
		keys[i], _ = ecdh.X25519().GenerateKey(rand.Reader)
	}
	expand := func(secret []byte, label string, ctx []byte, n int) []byte {
		info := make([]byte, 0, 4+6+len(label)+len(ctx))
		info = append(info, byte(n>>8), byte(n), byte(6+len(label)))
		info = append(info, "tls13 "...)
		info = append(info, label...)
		info = append(info, byte(len(ctx)))
		info = append(info, ctx...)
		out, _ := hkdf.Expand(sha256.New, secret, string(info), n)
		return out
	}
	mac := func(secret []byte, digest []byte) []byte {
		m := hmac.New(sha256.New, expand(secret, "finished", nil, 32))
		m.Write(digest)
		return m.Sum(nil)
	}
	for side := range 2 {
		shared, _ := keys[side].ECDH(keys[1-side].PublicKey())
		tr := sha256.New()
		empty := tr.Sum(nil)
		es, _ := hkdf.Extract(sha256.New, psk, nil)
		tr.Write(msgs[:220]) // Truncate(ClientHello)
		mac(expand(es, "ext binder", empty, 32), tr.Sum(nil))
		tr.Write(msgs[220:350]) // binders, ServerHello
		hs, _ := hkdf.Extract(sha256.New, shared, expand(es, "derived", empty, 32))
		d := tr.Sum(nil)
		chs, shs := expand(hs, "c hs traffic", d, 32), expand(hs, "s hs traffic", d, 32)
		tr.Write(msgs[350:370]) // EncryptedExtensions
		mac(shs, tr.Sum(nil))
		tr.Write(msgs[370:406]) // server Finished
		ms, _ := hkdf.Extract(sha256.New, make([]byte, 32), expand(hs, "derived", empty, 32))
		d = tr.Sum(nil)
		expand(ms, "c ap traffic", d, 32)
		expand(ms, "s ap traffic", d, 32)
		mac(chs, d)
		var aeads [2]cipher.AEAD
		var ivs [2][]byte
		for i, secret := range [][]byte{shs, chs} {
			key := expand(secret, "key", nil, 16)
			ivs[i] = expand(secret, "iv", nil, 12)
			block, _ := aes.NewCipher(key)
			aeads[i], _ = cipher.NewGCM(block)
		}
		// Client: opens the server's 57-byte flight, seals its 37-byte
		// Finished; the server the reverse. Opening fails here (no real
		// ciphertext) at the same cost as one that succeeds.
		rec := aeads[side].Seal(nil, ivs[side], msgs[:57-20*side], msgs[:5])
		aeads[1-side].Open(nil, ivs[1-side], rec, msgs[:5])
	}
}
