package tls13

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

func seedsFromVectors(f *testing.F, names ...string) {
	data, err := os.ReadFile("testdata/rfc8448.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		for _, n := range names {
			if bytes.HasPrefix(line, []byte(n+" = ")) {
				b, err := hex.DecodeString(string(bytes.TrimPrefix(line, []byte(n+" = "))))
				if err != nil {
					f.Fatal(err)
				}
				f.Add(b)
			}
		}
	}
}

// sampleClientHello is a ClientHello our client really sends.
func sampleClientHello(tb testing.TB, psks ...PSK) []byte {
	tb.Helper()
	cfg := &Config{PSKs: psks, Groups: []Group{X25519, P256}, KeyShares: 2, ServerName: "target", RecordSizeLimit: 4096}
	hs := &clientHandshakeState{c: Client(nil, cfg)}
	hello := &clientHello{random: make([]byte, 32), supportedVersions: []uint16{VersionTLS13},
		cipherSuites: DefaultCipherSuites, pskModes: []uint8{0, 1}, supportedGroups: cfg.Groups,
		serverName: "target", recordSizeLimit: 4096, signatureAlgorithms: defaultSignatureAlgorithms}
	for _, g := range cfg.Groups {
		_, share, err := newClientKey(g, cfg.rand())
		if err != nil {
			tb.Fatal(err)
		}
		hello.keyShares = append(hello.keyShares, keyShare{g, share})
	}
	for i := range psks {
		hs.offered = append(hs.offered, offeredPSK{psk: &psks[i], early: newEarlySecret(psks[i].Hash, psks[i].Key)})
	}
	hs.hello = hello
	hs.marshalWithBinders(nil)
	return hello.raw
}

// FuzzClientHello: the parser never panics, and what it accepts survives
// marshal → unmarshal with the same known fields (one encoding per value
// for everything we send).
func FuzzClientHello(f *testing.F) {
	seedsFromVectors(f, "s3.client_hello")
	f.Add(sampleClientHello(f, testPSK("a", crypto.SHA256), testPSK("b", crypto.SHA384)))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m clientHello
		if err := m.unmarshal(data); err != nil {
			var ae *AlertError
			if !errors.As(err, &ae) {
				t.Fatalf("non-alert error %v", err)
			}
			return
		}
		if m.bindersLen > len(data) {
			t.Fatalf("bindersLen %d > %d", m.bindersLen, len(data))
		}
		if len(m.pskIdentities) > 0 && (m.bindersLen < 2+33 || len(m.pskBinders) != len(m.pskIdentities)) {
			t.Fatalf("binders %d for %d identities, bindersLen %d", len(m.pskBinders), len(m.pskIdentities), m.bindersLen)
		}
		if len(m.compressionMethods) == 0 || len(m.cipherSuites) == 0 {
			return // accepted as a pre-TLS 1.3 hello; the server rejects it later
		}
		m2 := m
		m2.sessionID = bytes.Clone(m.sessionID)
		raw, err := m2.marshal()
		if err != nil {
			t.Fatalf("re-marshal of a parsed ClientHello: %v", err)
		}
		var m3 clientHello
		if err := m3.unmarshal(raw); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		for _, p := range []*clientHello{&m, &m3} {
			p.raw, p.bindersLen, p.compressionMethods = nil, 0, nil
		}
		// %v prints nil and empty slices alike, which is the equality
		// wanted here.
		if a, b := fmt.Sprintf("%v", m), fmt.Sprintf("%v", m3); a != b {
			t.Fatalf("round trip changed the message:\n%s\n%s", a, b)
		}
	})
}

func FuzzServerHello(f *testing.F) {
	seedsFromVectors(f, "s3.server_hello", "s4.server_hello")
	hrr := &serverHello{random: helloRetryRequestRandom[:], cipherSuite: TLS_AES_128_GCM_SHA256,
		supportedVersion: VersionTLS13, selectedGroup: P256, cookie: []byte("c")}
	f.Add(must(hrr.marshal()))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m serverHello
		if err := m.unmarshal(data); err != nil {
			return
		}
		m2 := m
		var m3 serverHello
		if err := m3.unmarshal(must(m2.marshal())); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if m.cipherSuite != m3.cipherSuite || m.supportedVersion != m3.supportedVersion ||
			m.selectedIdentity != m3.selectedIdentity || m.hasPSK != m3.hasPSK ||
			m.keyShare.group != m3.keyShare.group || !bytes.Equal(m.keyShare.data, m3.keyShare.data) ||
			m.selectedGroup != m3.selectedGroup || !bytes.Equal(m.cookie, m3.cookie) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m3)
		}
	})
}

func FuzzEncryptedExtensions(f *testing.F) {
	seedsFromVectors(f, "s3.encrypted_extensions", "s4.encrypted_extensions")
	f.Fuzz(func(t *testing.T, data []byte) {
		var m encryptedExtensions
		if err := m.unmarshal(data); err != nil {
			return
		}
		var m2 encryptedExtensions
		m.earlyData = false // never sent by us
		if err := m2.unmarshal(must(m.marshal())); err != nil {
			t.Fatal(err)
		}
		if m.recordSizeLimit != m2.recordSizeLimit || m.serverNameAck != m2.serverNameAck {
			t.Fatalf("%+v != %+v", m, m2)
		}
	})
}

func FuzzPostHandshakeMessages(f *testing.F) {
	f.Add(marshalKeyUpdate(1))
	f.Add(marshalFinished(make([]byte, 32)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := unmarshalKeyUpdate(data); err == nil && !bytes.Equal(marshalKeyUpdate(r), data) {
			t.Fatal("KeyUpdate round trip")
		}
		if v, err := unmarshalFinished(data, 32); err == nil && !bytes.Equal(marshalFinished(v), data) {
			t.Fatal("Finished round trip")
		}
	})
}

// must is for messages a test builds, which always fit.
func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// scriptConn feeds fixed bytes to a Conn and swallows what it writes.
type scriptConn struct {
	r *bytes.Reader
	net.Conn
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return nil }
func (c *scriptConn) RemoteAddr() net.Addr             { return nil }
func record(typ uint8, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// FuzzServerRecords drives a whole server with arbitrary client bytes:
// record headers, fragmentation, CCS, alerts, hellos. It must fail with
// an alert or an I/O error, never panic, and never read more than it was
// given.
func FuzzServerRecords(f *testing.F) {
	psk := testPSK("fuzz", crypto.SHA256)
	ch := sampleClientHello(f, psk)
	f.Add(record(recordTypeHandshake, ch))
	f.Add(append(record(recordTypeHandshake, ch[:10]), record(recordTypeHandshake, ch[10:])...))
	f.Add(append(record(recordTypeChangeCipherSpec, []byte{1}), record(recordTypeHandshake, ch)...))
	f.Add(record(recordTypeAlert, []byte{2, 40}))
	f.Add([]byte{22, 3, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := &scriptConn{r: bytes.NewReader(data)}
		err := Server(sc, &Config{GetPSK: keyring(psk)}).Handshake(context.Background())
		if err == nil {
			t.Fatal("handshake completed without a client Finished")
		}
		var ae *AlertError
		if !errors.As(err, &ae) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

// FuzzClientRecords drives a client with arbitrary server bytes.
func FuzzClientRecords(f *testing.F) {
	psk := testPSK("fuzz", crypto.SHA256)
	sh := &serverHello{random: make([]byte, 32), cipherSuite: TLS_AES_128_GCM_SHA256,
		supportedVersion: VersionTLS13, hasPSK: true}
	f.Add(record(recordTypeHandshake, must(sh.marshal())))
	f.Add(record(recordTypeAlert, []byte{2, 115}))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := &scriptConn{r: bytes.NewReader(data)}
		err := Client(sc, &Config{PSKs: []PSK{psk}}).Handshake(context.Background())
		if err == nil {
			t.Fatal("handshake completed against a script")
		}
	})
}

func TestHostileRecords(t *testing.T) {
	psk := testPSK("hostile", crypto.SHA256)
	ch := sampleClientHello(t, psk)
	ccs := record(recordTypeChangeCipherSpec, []byte{1})
	cases := []struct {
		name  string
		input []byte
		alert Alert
	}{
		{"oversized record", []byte{22, 3, 1, 0x40, 0x01}, AlertRecordOverflow},
		{"not TLS", []byte("SSH-2.0-OpenSSH"), AlertDecodeError},
		{"CCS flood", bytes.Repeat(ccs, 20), AlertUnexpectedMessage},
		{"bad CCS", record(recordTypeChangeCipherSpec, []byte{2}), AlertUnexpectedMessage},
		{"empty handshake record", record(recordTypeHandshake, nil), AlertDecodeError},
		{"application data first", record(recordTypeApplicationData, []byte{1, 2, 3}), AlertUnexpectedMessage},
		{"huge handshake message", record(recordTypeHandshake, []byte{1, 0xff, 0xff, 0xff}), AlertUnexpectedMessage},
		{"wrong first message", record(recordTypeHandshake, marshalFinished(make([]byte, 32))), AlertUnexpectedMessage},
		{"duplicate extension", record(recordTypeHandshake, dupExtension(t, ch)), AlertIllegalParameter},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := &scriptConn{r: bytes.NewReader(tc.input)}
			err := Server(sc, &Config{GetPSK: keyring(psk)}).Handshake(context.Background())
			wantAlert(t, err, tc.alert, false)
		})
	}
	t.Run("received alert", func(t *testing.T) {
		sc := &scriptConn{r: bytes.NewReader(record(recordTypeAlert, []byte{2, byte(AlertInsufficientSecurity)}))}
		err := Server(sc, &Config{GetPSK: keyring(psk)}).Handshake(context.Background())
		wantAlert(t, err, AlertInsufficientSecurity, true)
	})
}

// dupExtension inserts the same unknown extension twice at the front of
// the ClientHello's extensions.
func dupExtension(t *testing.T, ch []byte) []byte {
	t.Helper()
	var m clientHello
	if err := m.unmarshal(ch); err != nil {
		t.Fatal(err)
	}
	// Body: header(4) version(2) random(32) sid(1+n) suites(2+n) comp(1+n) exts(2+n).
	off := 4 + 2 + 32
	off += 1 + int(ch[off])
	off += 2 + (int(ch[off])<<8 | int(ch[off+1]))
	off += 1 + int(ch[off])
	ext := []byte{0xaa, 0xaa, 0, 0, 0xaa, 0xaa, 0, 0}
	out := append([]byte{}, ch[:off+2]...)
	out = append(out, ext...)
	out = append(out, ch[off+2:]...)
	extLen := (int(ch[off])<<8 | int(ch[off+1])) + len(ext)
	out[off], out[off+1] = byte(extLen>>8), byte(extLen)
	n := len(out) - 4
	out[1], out[2], out[3] = byte(n>>16), byte(n>>8), byte(n)
	return out
}

// writeConn records what a Conn writes and reads nothing.
type writeConn struct {
	scriptConn
	out []byte
}

func (c *writeConn) Write(p []byte) (int, error) { c.out = append(c.out, p...); return len(p), nil }

// handshakeBytes joins the bodies of the plaintext handshake records in
// b, in order, and stops at anything else.
func handshakeBytes(b []byte) []byte {
	var out []byte
	for len(b) >= recordHeaderLen && b[0] == recordTypeHandshake {
		n := int(b[3])<<8 | int(b[4])
		if len(b) < recordHeaderLen+n {
			break
		}
		out = append(out, b[recordHeaderLen:recordHeaderLen+n]...)
		b = b[recordHeaderLen+n:]
	}
	return out
}

// FuzzClientHelloConfig builds ClientHellos from random client settings
// (identities up to 64 KiB, groups, suites, modes, key shares, server
// name, record size limit): each is refused cleanly by Config.check or
// marshals, and what is sent goes through the server's parser and
// checks, with every binder verifying under the server's code.
func FuzzClientHelloConfig(f *testing.F) {
	f.Add([]byte{1, 0x00, 0x20, 0, 2, 0, 1, 0, 1, 1, 0, 0})
	f.Add([]byte{1, 0xff, 0x78, 0, 1, 0, 1, 0, 1, 1, 0, 0})    // a 65,400-byte identity (issue 14)
	f.Add([]byte{1, 0xff, 0xdc, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0}) // 65,500 bytes: past what the ClientHello can hold
	f.Add([]byte{3, 0x01, 0x00, 1, 0x00, 0x40, 0, 0x10, 0, 2, 3, 1, 5, 4, 0, 1, 2, 1, 1, 2, 0, 8, 0x10, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := bytes.NewReader(data)
		byte1 := func() int { b, _ := s.ReadByte(); return int(b) }
		uint16v := func() int { return byte1()<<8 | byte1() }
		allGroups := []Group{X25519, P256, P384, FFDHE2048, FFDHE3072, X25519MLKEM768, 0x1234}
		allSuites := []CipherSuite{TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, 0x1304}

		cfg := &Config{Rand: fixedRand(4)}
		for i := range byte1() % 6 {
			n := uint16v()
			h := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}[byte1()%3]
			id := bytes.Repeat([]byte{'a' + byte(i)}, n)
			key := bytes.Repeat([]byte{byte(i + 1)}, max(h.Size(), 1))
			cfg.PSKs = append(cfg.PSKs, PSK{Identity: id, Key: key, Hash: h})
		}
		if n := byte1() % 5; n > 0 {
			cfg.Groups = []Group{}
			for range n {
				cfg.Groups = append(cfg.Groups, allGroups[byte1()%len(allGroups)])
			}
		}
		if n := byte1() % 4; n > 0 {
			cfg.CipherSuites = []CipherSuite{}
			for range n {
				cfg.CipherSuites = append(cfg.CipherSuites, allSuites[byte1()%len(allSuites)])
			}
		}
		if n := byte1() % 3; n > 0 {
			cfg.PSKModes = []PSKMode{}
			for range n {
				cfg.PSKModes = append(cfg.PSKModes, PSKMode(byte1()%3))
			}
		}
		cfg.KeyShares = byte1() % 4
		cfg.ServerName = string(bytes.Repeat([]byte{'s'}, byte1()*2))
		cfg.RecordSizeLimit = uint16v() % (maxPlaintext + 100)

		wc := &writeConn{scriptConn: scriptConn{r: bytes.NewReader(nil)}}
		err := Client(wc, cfg).Handshake(context.Background())
		if cerr := cfg.check(true); cerr != nil {
			if !errors.Is(err, cerr) && err.Error() != cerr.Error() {
				t.Fatalf("config refused (%v) but handshake said %v", cerr, err)
			}
			// Nothing but the internal_error alert that says we gave up.
			if !bytes.Equal(wc.out, record(recordTypeAlert, []byte{2, byte(AlertInternalError)})) {
				t.Fatalf("refused config sent %x", wc.out)
			}
			return
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// Sent its ClientHello, then the empty script hung up.
		} else {
			var ae *AlertError
			if !errors.As(err, &ae) || ae.Alert != AlertInternalError {
				t.Fatalf("handshake error %v", err)
			}
			return // e.g. no suite matches any PSK's hash
		}
		msg := handshakeBytes(wc.out)
		var ch clientHello
		if err := ch.unmarshal(msg); err != nil {
			t.Fatalf("server cannot parse the ClientHello: %v", err)
		}
		hs := &serverHandshakeState{c: Server(nil, &Config{GetPSK: keyring(cfg.PSKs...)}), hello: &ch}
		if err := hs.checkClientHello(&ch); err != nil {
			t.Fatalf("server refuses the ClientHello: %v", err)
		}
		if len(ch.pskIdentities) != len(cfg.PSKs) || string(ch.random) == "" || ch.serverName != cfg.ServerName {
			t.Fatalf("ClientHello carries %d identities for %d PSKs", len(ch.pskIdentities), len(cfg.PSKs))
		}
		for i, psk := range cfg.PSKs {
			if !bytes.Equal(ch.pskIdentities[i].identity, psk.Identity) {
				t.Fatalf("identity %d changed", i)
			}
			hs.psk, hs.pskIndex = &cfg.PSKs[i], i
			hs.transcript = psk.Hash.New()
			hs.transcript.Write(ch.truncated())
			if err := hs.checkBinder(); err != nil {
				t.Fatalf("binder %d: %v", i, err)
			}
		}
		for _, s := range ch.cipherSuites {
			if !slices.Contains(cfg.cipherSuites(), s) {
				t.Fatalf("offered suite %v not configured", s)
			}
		}
		for _, m := range ch.pskModes {
			if !slices.Contains(cfg.pskModes(true), PSKMode(m)) {
				t.Fatalf("offered mode %d not configured", m)
			}
		}
	})
}
