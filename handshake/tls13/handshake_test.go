package tls13

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// testPSK returns a PSK of the given hash with a key derived from name.
func testPSK(name string, h crypto.Hash) PSK {
	key := bytes.Repeat([]byte(name), 64)[:h.Size()]
	return PSK{Identity: []byte(name), Key: key, Hash: h, Tag: name}
}

// keyring is a server lookup over a fixed set of PSKs.
func keyring(psks ...PSK) func([]byte) (*PSK, error) {
	return func(id []byte) (*PSK, error) {
		for _, p := range psks {
			if bytes.Equal(p.Identity, id) {
				p := p
				return &p, nil
			}
		}
		return nil, fmt.Errorf("no key %q: %w", id, ErrUnknownPSK)
	}
}

type handshakeResult struct {
	client, server       *Conn
	clientErr, serverErr error
}

func runHandshake(t testing.TB, ccfg, scfg *Config) handshakeResult {
	t.Helper()
	cc, sc := testtool.TCPPair(t)
	client, server := Client(cc, ccfg), Server(sc, scfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- server.Handshake(ctx) }()
	cerr := client.Handshake(ctx)
	if cerr != nil {
		// The server may wait for a Finished that will never come.
		cc.Close()
	}
	serr := <-done
	return handshakeResult{client, server, cerr, serr}
}

func mustHandshake(t *testing.T, ccfg, scfg *Config) handshakeResult {
	t.Helper()
	r := runHandshake(t, ccfg, scfg)
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("handshake failed: client %v, server %v", r.clientErr, r.serverErr)
	}
	return r
}

// exchange proves both directions carry data under the negotiated keys.
func exchange(t *testing.T, r handshakeResult) {
	t.Helper()
	msg := []byte("ping over TLS 1.3 PSK")
	go func() {
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(r.server, buf); err == nil {
			r.server.Write(append([]byte("echo:"), buf...))
		}
	}()
	if _, err := r.client.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg)+5)
	if _, err := io.ReadFull(r.client, got); err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("echo:"), msg...); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestHandshakeSuitesAndGroups(t *testing.T) {
	for _, suite := range DefaultCipherSuites {
		for _, group := range []Group{X25519, P256, P384, FFDHE2048, FFDHE3072, X25519MLKEM768} {
			t.Run(suite.String()+"/"+group.String(), func(t *testing.T) {
				psk := testPSK("NVMe0R01 nqn.host nqn.subsys", suite.Hash())
				ccfg := &Config{CipherSuites: []CipherSuite{suite}, Groups: []Group{group}, PSKs: []PSK{psk}}
				scfg := &Config{GetPSK: keyring(psk), Groups: []Group{group}}
				r := mustHandshake(t, ccfg, scfg)
				for _, st := range []Session{r.client.State(), r.server.State()} {
					if st.Suite != suite || st.Group != group || st.PSKMode != PSKModeDHE ||
						st.DidHelloRetryRequest || !bytes.Equal(st.PSKIdentity, psk.Identity) {
						t.Errorf("state %+v", st)
					}
				}
				exchange(t, r)
			})
		}
	}
}

func TestHandshakePSKOnly(t *testing.T) {
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		psk := testPSK("psk-ke", h)
		ccfg := &Config{PSKs: []PSK{psk}, PSKModes: []PSKMode{PSKModeKE}}
		scfg := &Config{GetPSK: keyring(psk)}
		r := mustHandshake(t, ccfg, scfg)
		if st := r.client.State(); st.PSKMode != PSKModeKE || st.Group != 0 || st.Suite.Hash() != h {
			t.Errorf("client state %+v", st)
		}
		exchange(t, r)
	}
}

func TestHandshakeServerPrefersDHE(t *testing.T) {
	psk := testPSK("both", crypto.SHA256)
	ccfg := &Config{PSKs: []PSK{psk}, PSKModes: []PSKMode{PSKModeKE, PSKModeDHE}}
	r := mustHandshake(t, ccfg, &Config{GetPSK: keyring(psk)})
	if st := r.server.State(); st.PSKMode != PSKModeDHE {
		t.Errorf("server chose %v, want psk_dhe_ke", st.PSKMode)
	}
	// A server that refuses psk_ke still works with such a client...
	r = mustHandshake(t, ccfg, &Config{GetPSK: keyring(psk), PSKModes: []PSKMode{PSKModeDHE}})
	// ...but not with one that offers only psk_ke.
	r = runHandshake(t, &Config{PSKs: []PSK{psk}, PSKModes: []PSKMode{PSKModeKE}},
		&Config{GetPSK: keyring(psk), PSKModes: []PSKMode{PSKModeDHE}})
	wantAlert(t, r.serverErr, AlertHandshakeFailure, false)
	wantAlert(t, r.clientErr, AlertHandshakeFailure, true)
}

func TestHelloRetryRequest(t *testing.T) {
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		psk := testPSK("hrr", h)
		ccfg := &Config{PSKs: []PSK{psk}, Groups: []Group{X25519, P384, FFDHE3072}}
		scfg := &Config{GetPSK: keyring(psk), Groups: []Group{FFDHE3072, P384}}
		r := mustHandshake(t, ccfg, scfg)
		for _, st := range []Session{r.client.State(), r.server.State()} {
			if !st.DidHelloRetryRequest || st.Group != FFDHE3072 {
				t.Errorf("%v: state %+v, want HRR to ffdhe3072", h, st)
			}
		}
		exchange(t, r)
	}
}

func TestHelloRetryRequestDropsOtherHashes(t *testing.T) {
	p256 := testPSK("sha256 key", crypto.SHA256)
	p384 := testPSK("sha384 key", crypto.SHA384)
	ccfg := &Config{PSKs: []PSK{p256, p384}, Groups: []Group{X25519, P256}}
	// The server knows only the SHA-384 key and wants P-256: after the
	// retry the client offers only p384, at index 0.
	scfg := &Config{GetPSK: keyring(p384), Groups: []Group{P256}}
	r := mustHandshake(t, ccfg, scfg)
	cs, ss := r.client.State(), r.server.State()
	if cs.PSKIndex != 1 || ss.PSKIndex != 0 || cs.Suite != TLS_AES_256_GCM_SHA384 || !cs.DidHelloRetryRequest {
		t.Errorf("client %+v server %+v", cs, ss)
	}
	if cs.Tag != "sha384 key" {
		t.Errorf("client tag %v", cs.Tag)
	}
}

func TestSeveralIdentities(t *testing.T) {
	var psks []PSK
	for i := range 5 {
		psks = append(psks, testPSK(fmt.Sprintf("NVMe0R0%d host subsys-%d", 1+i%2, i), []crypto.Hash{crypto.SHA256, crypto.SHA384}[i%2]))
	}
	for known := range psks {
		scfg := &Config{GetPSK: keyring(psks[known])}
		r := mustHandshake(t, &Config{PSKs: psks}, scfg)
		cs, ss := r.client.State(), r.server.State()
		if cs.PSKIndex != known || ss.PSKIndex != known || cs.Tag != psks[known].Tag ||
			cs.Suite.Hash() != psks[known].Hash {
			t.Errorf("known %d: client %+v server %+v", known, cs, ss)
		}
	}
}

func TestPerPSKPolicy(t *testing.T) {
	psk := testPSK("narrowed", crypto.SHA256)
	narrowed := psk
	narrowed.CipherSuites = []CipherSuite{TLS_CHACHA20_POLY1305_SHA256}
	narrowed.Groups = []Group{P256}
	r := mustHandshake(t, &Config{PSKs: []PSK{psk}}, &Config{GetPSK: keyring(narrowed)})
	if st := r.server.State(); st.Suite != TLS_CHACHA20_POLY1305_SHA256 || st.Group != P256 || !st.DidHelloRetryRequest {
		t.Errorf("state %+v", st)
	}
	narrowed.PSKModes = []PSKMode{PSKModeKE}
	r = runHandshake(t, &Config{PSKs: []PSK{psk}}, &Config{GetPSK: keyring(narrowed)})
	wantAlert(t, r.serverErr, AlertHandshakeFailure, false)
}

func wantAlert(t *testing.T, err error, a Alert, received bool) {
	t.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != a || ae.Received != received {
		t.Errorf("error %v, want alert %v (received %v)", err, a, received)
	}
}

func TestFailures(t *testing.T) {
	good := testPSK("NVMe0R01 host subsys", crypto.SHA256)
	wrong := good
	wrong.Key = bytes.Repeat([]byte{7}, 32)

	t.Run("wrong key", func(t *testing.T) {
		r := runHandshake(t, &Config{PSKs: []PSK{good}}, &Config{GetPSK: keyring(wrong)})
		wantAlert(t, r.serverErr, AlertDecryptError, false)
		wantAlert(t, r.clientErr, AlertDecryptError, true)
	})
	t.Run("unknown identity", func(t *testing.T) {
		r := runHandshake(t, &Config{PSKs: []PSK{good}}, &Config{GetPSK: keyring(testPSK("other", crypto.SHA256))})
		wantAlert(t, r.serverErr, AlertUnknownPSKIdentity, false)
		wantAlert(t, r.clientErr, AlertUnknownPSKIdentity, true)
	})
	t.Run("hash mismatch", func(t *testing.T) {
		h384 := good
		h384.Hash = crypto.SHA384
		h384.Key = bytes.Repeat([]byte{1}, 48)
		r := runHandshake(t, &Config{PSKs: []PSK{good}}, &Config{GetPSK: keyring(h384)})
		wantAlert(t, r.serverErr, AlertHandshakeFailure, false)
	})
	t.Run("no common group", func(t *testing.T) {
		r := runHandshake(t, &Config{PSKs: []PSK{good}, Groups: []Group{X25519}},
			&Config{GetPSK: keyring(good), Groups: []Group{P384}, PSKModes: []PSKMode{PSKModeDHE}})
		wantAlert(t, r.serverErr, AlertHandshakeFailure, false)
	})
	t.Run("lookup error", func(t *testing.T) {
		boom := errors.New("keyring unavailable")
		r := runHandshake(t, &Config{PSKs: []PSK{good}}, &Config{GetPSK: func([]byte) (*PSK, error) { return nil, boom }})
		if !errors.Is(r.serverErr, boom) {
			t.Errorf("server error %v", r.serverErr)
		}
		wantAlert(t, r.clientErr, AlertInternalError, true)
	})
	t.Run("peer hangs up", func(t *testing.T) {
		cc, sc := testtool.TCPPair(t)
		go func() {
			buf := make([]byte, 10)
			sc.Read(buf)
			sc.Close()
		}()
		err := Client(cc, &Config{PSKs: []PSK{good}}).Handshake(context.Background())
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("error %v, want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		cc, _ := testtool.TCPPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := Client(cc, &Config{PSKs: []PSK{good}}).Handshake(ctx)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		_, sc := testtool.TCPPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		err := Server(sc, &Config{GetPSK: keyring(good)}).Handshake(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
	t.Run("not TLS", func(t *testing.T) {
		cc, sc := testtool.TCPPair(t)
		go cc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		err := Server(sc, &Config{GetPSK: keyring(good)}).Handshake(context.Background())
		var ae *AlertError
		if !errors.As(err, &ae) {
			t.Errorf("error %v, want an alert", err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		cc, _ := testtool.TCPPair(t)
		if err := Client(cc, &Config{}).Handshake(context.Background()); err == nil {
			t.Error("client without PSKs succeeded")
		}
	})
}

// TestNoOverRead proves the property kTLS depends on: whatever the peer
// sends after its last handshake record is still in the socket when the
// handshake returns, and the handed-off secrets decrypt it.
func TestNoOverRead(t *testing.T) {
	for _, suite := range DefaultCipherSuites {
		t.Run(suite.String(), func(t *testing.T) {
			psk := testPSK("overread", suite.Hash())
			cc, sc := testtool.TCPPair(t)
			client := Client(cc, &Config{PSKs: []PSK{psk}, CipherSuites: []CipherSuite{suite}})
			server := Server(sc, &Config{GetPSK: keyring(psk)})
			done := make(chan error, 1)
			go func() {
				// The client sends application data right behind its
				// Finished, in the same TCP segment if it can.
				if err := client.Handshake(context.Background()); err != nil {
					done <- err
					return
				}
				_, err := client.Write([]byte("first record after the handshake"))
				done <- err
			}()
			if err := server.Handshake(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			sess, err := server.Handoff()
			if err != nil {
				t.Fatal(err)
			}
			if sess.RX.Seq != 0 || sess.TX.Seq != 0 {
				t.Errorf("sequence numbers rx %d tx %d, want 0 0", sess.RX.Seq, sess.TX.Seq)
			}
			// Read the raw record from the socket and decrypt it the way
			// kTLS would, with the handed-off secret.
			var rx halfConn
			if err := rx.setTrafficSecret(sess.Suite, sess.RX.Secret); err != nil {
				t.Fatal(err)
			}
			hdr := make([]byte, 5)
			if _, err := io.ReadFull(sc, hdr); err != nil {
				t.Fatal(err)
			}
			body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
			if _, err := io.ReadFull(sc, body); err != nil {
				t.Fatal(err)
			}
			typ, data, err := rx.open(hdr, body)
			if err != nil || typ != recordTypeApplicationData || string(data) != "first record after the handshake" {
				t.Fatalf("decrypted type %d %q, err %v", typ, data, err)
			}
			if _, err := server.Read(make([]byte, 1)); err == nil {
				t.Error("Read after Handoff succeeded")
			}
		})
	}
}

func TestKeyUpdateAndClose(t *testing.T) {
	psk := testPSK("keyupdate", crypto.SHA256)
	r := mustHandshake(t, &Config{PSKs: []PSK{psk}}, &Config{GetPSK: keyring(psk)})
	if err := r.client.KeyUpdate(true); err != nil {
		t.Fatal(err)
	}
	exchange(t, r) // the server answered the requested update while reading
	if err := r.server.KeyUpdate(false); err != nil {
		t.Fatal(err)
	}
	exchange(t, r)
	// client: its KeyUpdate reset its sequence, then two pings; server: its own KeyUpdate reset its
	// sequence, then one echo. Read under outMu: the writes may have
	// happened on the exchange goroutine.
	r.client.outMu.Lock()
	cseq := r.client.out.seq
	r.client.outMu.Unlock()
	r.server.outMu.Lock()
	sseq := r.server.out.seq
	r.server.outMu.Unlock()
	if cseq != 2 || sseq != 1 {
		t.Errorf("client tx seq %d, server tx seq %d, want 2 and 1", cseq, sseq)
	}
	if err := r.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.server.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("server read after close_notify: %v, want io.EOF", err)
	}
}

func TestLargeWritesAndRecordSizeLimit(t *testing.T) {
	psk := testPSK("rsl", crypto.SHA256)
	r := mustHandshake(t, &Config{PSKs: []PSK{psk}, RecordSizeLimit: 1024}, &Config{GetPSK: keyring(psk), RecordSizeLimit: 4096})
	if got := r.server.State().PeerRecordSizeLimit; got != 1024 {
		t.Errorf("server saw limit %d", got)
	}
	if got := r.client.State().PeerRecordSizeLimit; got != 4096 {
		t.Errorf("client saw limit %d", got)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	go r.server.Write(data)
	got := make([]byte, len(data))
	if _, err := io.ReadFull(r.client, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %v", err)
	}
	if r.server.out.seq < uint64(len(data)/1023) {
		t.Errorf("server sent %d records for %d bytes with a 1024-byte limit", r.server.out.seq, len(data))
	}
}

func TestServerIgnoresEarlyData(t *testing.T) {
	// A client offering 0-RTT (as `openssl s_client -early_data` would)
	// must get a full handshake with its early records skipped.
	psk := testPSK("early", crypto.SHA256)
	cc, sc := testtool.TCPPair(t)
	hs := &clientHandshakeState{c: Client(cc, &Config{PSKs: []PSK{psk}})}
	hs.c.inHandshake = true
	origWrite := hs.writeHandshake
	_ = origWrite
	// Build the ClientHello with early_data, then send one early record.
	server := Server(sc, &Config{GetPSK: keyring(psk)})
	done := make(chan error, 1)
	go func() { done <- server.Handshake(context.Background()) }()
	hs.c.config.check(true)
	if err := sendHelloWithEarlyData(hs); err != nil {
		t.Fatal(err)
	}
	early := []byte{recordTypeApplicationData, 3, 3, 0, 40}
	early = append(early, make([]byte, 40)...)
	if _, err := cc.Write(early); err != nil {
		t.Fatal(err)
	}
	if err := finishClientHandshake(hs); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func sendHelloWithEarlyData(hs *clientHandshakeState) error {
	cfg := hs.c.config
	hello := &clientHello{random: make([]byte, 32), supportedVersions: []uint16{VersionTLS13},
		cipherSuites: []CipherSuite{TLS_AES_128_GCM_SHA256}, pskModes: []uint8{1},
		supportedGroups: []Group{X25519}, earlyData: true}
	key, share, err := newClientKey(X25519, cfg.rand())
	if err != nil {
		return err
	}
	hs.keys = []groupKey{{X25519, key}}
	hello.keyShares = []keyShare{{X25519, share}}
	p := &cfg.PSKs[0]
	hs.offered = []offeredPSK{{psk: p, early: newEarlySecret(p.Hash, p.Key)}}
	hs.hello = hello
	hs.marshalWithBinders(nil)
	hs.ch1 = hello.raw
	return hs.writeHandshake(hello.raw)
}

func finishClientHandshake(hs *clientHandshakeState) error {
	sh, err := hs.readServerHello()
	if err != nil {
		return err
	}
	if err := hs.processServerHello(sh); err != nil {
		return err
	}
	if err := hs.readEncryptedExtensions(); err != nil {
		return err
	}
	return hs.readServerFinishedAndReply()
}

func TestParseNames(t *testing.T) {
	for _, s := range DefaultCipherSuites {
		got, err := ParseCipherSuite(s.String())
		if err != nil || got != s {
			t.Errorf("ParseCipherSuite(%v) = %v, %v", s, got, err)
		}
	}
	if s, err := ParseCipherSuite("aes_256_gcm_sha384"); err != nil || s != TLS_AES_256_GCM_SHA384 {
		t.Errorf("short name: %v %v", s, err)
	}
	for _, g := range append(slices.Clone(DefaultGroups), X25519MLKEM768) {
		got, err := ParseGroup(g.String())
		if err != nil || got != g {
			t.Errorf("ParseGroup(%v) = %v, %v", g, got, err)
		}
	}
	if _, err := ParseGroup("x448"); err == nil {
		t.Error("x448 parsed")
	}
}
