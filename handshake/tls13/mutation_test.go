package tls13

// Tests written to kill mutants that lived in tests/mutation (issue 11,
// tests/mutation/needs-tests.txt): each pins a bound or a branch the
// older tests reached from one side only. Most use the hostile-peer
// harness of hostile_test.go.

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
)

// TestConfigCheckBounds: Config.check accepts each limit itself and
// refuses one past it.
func TestConfigCheckBounds(t *testing.T) {
	psks := func(n int) []PSK {
		out := make([]PSK, n)
		for i := range out {
			out[i] = testPSK(fmt.Sprintf("id%d", i), crypto.SHA256)
		}
		return out
	}
	// longID is a SHA-256 PSK whose pre_shared_key extension takes ext
	// bytes: its 4-byte header, the two 2-byte list lengths, the
	// identity's 2-byte length, the identity and its 4-byte age, and the
	// binder's 1-byte length and 32 bytes.
	longID := func(ext int) PSK {
		p := testPSK("x", crypto.SHA256)
		p.Identity = bytes.Repeat([]byte{'i'}, ext-(4+2+2+2+4+1+32))
		return p
	}
	bad := testPSK("bad", crypto.SHA256)
	bad.Key = nil
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"record_size_limit 63", Config{PSKs: psks(1), RecordSizeLimit: 63}, false},
		{"record_size_limit 64", Config{PSKs: psks(1), RecordSizeLimit: 64}, true},
		{"record_size_limit 2^14+1", Config{PSKs: psks(1), RecordSizeLimit: maxPlaintext + 1}, true},
		{"record_size_limit 2^14+2", Config{PSKs: psks(1), RecordSizeLimit: maxPlaintext + 2}, false},
		{"32 PSKs", Config{PSKs: psks(maxIdentities)}, true},
		{"33 PSKs", Config{PSKs: psks(maxIdentities + 1)}, false},
		{"second PSK without key", Config{PSKs: append(psks(1), bad)}, false},
		{"PSK extension of the largest size", Config{PSKs: []PSK{longID(maxPSKExtension)}}, true},
		{"PSK extension one byte larger", Config{PSKs: []PSK{longID(maxPSKExtension + 1)}}, false},
		{"server name of 255 bytes", Config{PSKs: psks(1), ServerName: strings.Repeat("a", 255)}, true},
		{"server name of 256 bytes", Config{PSKs: psks(1), ServerName: strings.Repeat("a", 256)}, false},
	} {
		if err := tc.cfg.check(true); (err == nil) != tc.ok {
			t.Errorf("%s: check() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestParserBounds: record_size_limit 64 is the smallest allowed (RFC
// 8449, 4), and an extension numbered 64, past the parser's bitmap, is
// still caught when repeated.
func TestParserBounds(t *testing.T) {
	for _, limit := range []uint16{63, 64} {
		ch := &clientHello{random: make([]byte, 32), cipherSuites: DefaultCipherSuites,
			supportedVersions: []uint16{VersionTLS13}, recordSizeLimit: limit}
		err := new(clientHello).unmarshal(must(ch.marshal()))
		if ok := limit >= 64; (err == nil) != ok {
			t.Errorf("ClientHello with record_size_limit %d: %v", limit, err)
		}
		ee := &encryptedExtensions{recordSizeLimit: limit}
		err = new(encryptedExtensions).unmarshal(must(ee.marshal()))
		if ok := limit >= 64; (err == nil) != ok {
			t.Errorf("EncryptedExtensions with record_size_limit %d: %v", limit, err)
		}
	}
	ch := &clientHello{random: make([]byte, 32), cipherSuites: DefaultCipherSuites, supportedVersions: []uint16{VersionTLS13}}
	raw := insertExtension(must(ch.marshal()), 64, nil)
	if err := new(clientHello).unmarshal(raw); err != nil {
		t.Fatalf("ClientHello with extension 64: %v", err)
	}
	var ae *AlertError
	if err := new(clientHello).unmarshal(insertExtension(raw, 64, nil)); !errors.As(err, &ae) || ae.Alert != AlertIllegalParameter {
		t.Errorf("ClientHello with extension 64 twice: %v, want illegal_parameter", err)
	}
	for _, ext := range []uint16{0, 63, 64, 65, 0xffff} {
		var s extSet
		if !s.add(ext) || s.add(ext) {
			t.Errorf("extSet: extension %d not caught the second time", ext)
		}
	}
}

// TestHostileBoundaries: records and messages at each size limit, and
// peers doing things the RFC allows that the other tests' peers never do.
func TestHostileBoundaries(t *testing.T) {
	ok := func(t *testing.T, err error, a engineAlert) {
		t.Helper()
		if err != nil || a.ok {
			t.Fatalf("engine %v, peer saw %v", err, a)
		}
	}
	early := func(n int) func(p *peer) { // n bytes of 0-RTT records
		return func(p *peer) {
			for ; n > 0; n -= maxPlaintext {
				l := min(n, maxPlaintext)
				p.raw(append([]byte{recordTypeApplicationData, 3, 3, byte(l >> 8), byte(l)}, make([]byte, l)...))
			}
		}
	}
	withEarly := func(n int) clientScript {
		return clientScript{hello: func(ch *clientHello) { ch.earlyData = true },
			records: func(p *peer, ch []byte) { p.send(recordTypeHandshake, ch); early(n)(p) }}
	}
	t.Run("ClientHello filling a plaintext record", func(t *testing.T) {
		err, a := hostileServer(t, nil, clientScript{
			unsigned: func(b []byte) []byte { return insertExtension(b, 21, make([]byte, maxPlaintext-len(b)-4)) },
			records: func(p *peer, ch []byte) {
				if len(ch) != maxPlaintext {
					t.Fatalf("ClientHello of %d bytes", len(ch))
				}
				p.send(recordTypeHandshake, ch)
			}}, nil)
		ok(t, err, a)
	})
	t.Run("protected record of 2^14+256 bytes", func(t *testing.T) {
		err, a := hostileServer(t, nil, clientScript{finished: func([]byte) []byte { return nil },
			beforeFinished: func(p *peer) {
				p.raw(append([]byte{23, 3, 3, 0x41, 0x00}, make([]byte, maxCiphertext)...))
			}}, nil)
		wantOutcome(t, err, a, AlertBadRecordMAC, false, syscall.EACCES)
	})
	t.Run("empty Finished", func(t *testing.T) {
		err, a := hostileServer(t, nil, clientScript{finished: func([]byte) []byte { return []byte{typeFinished, 0, 0, 0} }}, nil)
		wantOutcome(t, err, a, AlertDecodeError, false, syscall.EACCES)
	})
	t.Run("empty server Finished", func(t *testing.T) {
		err, a := hostileClient(t, nil, serverScript{dhe: true, finished: func([]byte) []byte { return []byte{typeFinished, 0, 0, 0} }}, nil)
		wantOutcome(t, err, a, AlertDecodeError, false, syscall.EACCES)
	})
	// 0-RTT data up to maxEarlyDataSkip is skipped, under the handshake
	// keys (it fails to decrypt) and, after a HelloRetryRequest, before
	// any keys.
	t.Run("early data up to the limit", func(t *testing.T) {
		err, a := hostileServer(t, nil, withEarly(maxEarlyDataSkip), nil)
		ok(t, err, a)
	})
	t.Run("early data past the limit", func(t *testing.T) {
		err, a := hostileServer(t, nil, withEarly(maxEarlyDataSkip+1), nil)
		wantOutcome(t, err, a, AlertBadRecordMAC, false, syscall.EACCES)
	})
	t.Run("early data up to the limit before a second ClientHello", func(t *testing.T) {
		s := withEarly(maxEarlyDataSkip)
		s.groups = []Group{X25519, P256}
		s.hello2 = func(ch *clientHello) { ch.earlyData = false }
		err, a := hostileServer(t, &Config{Groups: []Group{P256}}, s, nil)
		ok(t, err, a)
	})
	t.Run("early data past the limit before a second ClientHello", func(t *testing.T) {
		s := withEarly(maxEarlyDataSkip + 1)
		s.groups = []Group{X25519, P256}
		s.hello2 = func(ch *clientHello) { ch.earlyData = false }
		err, a := hostileServer(t, &Config{Groups: []Group{P256}}, s, nil)
		wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
	})
	t.Run("HelloRetryRequest with only a cookie", func(t *testing.T) {
		cookie := []byte("a cookie")
		echoed := false
		err, a := hostileClient(t, &Config{Groups: []Group{X25519, P256}}, serverScript{dhe: true, hrr: P256,
			editHRR: func(h *serverHello) { h.selectedGroup, h.cookie = 0, cookie },
			ch2:     func(ch *clientHello) { echoed = bytes.Equal(ch.cookie, cookie) },
		}, nil)
		ok(t, err, a)
		if !echoed {
			t.Error("the second ClientHello does not echo the cookie")
		}
	})
	t.Run("server_name acknowledged", func(t *testing.T) {
		err, a := hostileClient(t, &Config{ServerName: "target.example"}, serverScript{dhe: true,
			ee: func(ee *encryptedExtensions) { ee.serverNameAck = true }}, nil)
		ok(t, err, a)
	})
	t.Run("GetPSK without identity", func(t *testing.T) {
		var id []byte
		err, a := hostileServer(t, &Config{GetPSK: func(identity []byte) (*PSK, error) {
			if !bytes.Equal(identity, hostilePSK.Identity) {
				return nil, ErrUnknownPSK
			}
			return &PSK{Key: hostilePSK.Key, Hash: hostilePSK.Hash}, nil
		}}, clientScript{}, func(c *Conn) error { id = c.State().PSKIdentity; return nil })
		ok(t, err, a)
		if !bytes.Equal(id, hostilePSK.Identity) {
			t.Errorf("Session.PSKIdentity %q, want %q", id, hostilePSK.Identity)
		}
	})
	// Middlebox compatibility (RFC 8446, D.4): one change_cipher_spec
	// after the ServerHello exactly when the client sent a session ID.
	for _, sid := range [][]byte{nil, bytes.Repeat([]byte{7}, 32)} {
		t.Run(fmt.Sprintf("session ID of %d bytes", len(sid)), func(t *testing.T) {
			want := min(len(sid), 1)
			err, a := hostileServer(t, nil, clientScript{
				hello: func(ch *clientHello) { ch.sessionID = sid },
				after: func(p *peer) {
					if p.ccs != want {
						t.Errorf("engine sent %d change_cipher_spec records, want %d", p.ccs, want)
					}
				}}, nil)
			ok(t, err, a)
		})
	}
}

// TestHostileEmptyRecords: empty application-data records are allowed
// (RFC 8446, 5.1), but only 16 in a row.
func TestHostileEmptyRecords(t *testing.T) {
	empties := func(n int) func(p *peer) {
		return func(p *peer) {
			for range n {
				p.send(recordTypeApplicationData, nil)
			}
			p.send(recordTypeApplicationData, []byte("data"))
		}
	}
	var got []byte
	read := func(c *Conn) error {
		b, err := io.ReadAll(c)
		got = b
		return err
	}
	err, a := hostileServer(t, nil, clientScript{after: empties(16)}, read)
	if err != nil || a.ok || string(got) != "data" {
		t.Errorf("16 empty records: read %q, engine %v, peer saw %v", got, err, a)
	}
	err, a = hostileServer(t, nil, clientScript{after: empties(17)}, readAll)
	wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
}

// TestHostileUselessRecords: records without content (here
// change_cipher_spec, which a peer may send during the handshake) are
// dropped, but only 16 in a row.
func TestHostileUselessRecords(t *testing.T) {
	ccs := func(n int) clientScript {
		return clientScript{beforeFinished: func(p *peer) {
			for range n {
				p.raw(record(recordTypeChangeCipherSpec, []byte{1}))
			}
		}}
	}
	if err, a := hostileServer(t, nil, ccs(16), nil); err != nil || a.ok {
		t.Errorf("16 change_cipher_spec records: engine %v, peer saw %v", err, a)
	}
	err, a := hostileServer(t, nil, ccs(17), nil)
	wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
}

// TestHostileRecordSizeLimit: with the peer's record_size_limit N the
// engine sends records of at most N-1 bytes of content (RFC 8449, 4),
// and uses that much.
func TestHostileRecordSizeLimit(t *testing.T) {
	const limit, total = 100, 1000
	data := bytes.Repeat([]byte("0123456789"), total/10)
	write := func(c *Conn) error {
		if got := c.State().PeerRecordSizeLimit; got != limit {
			return fmt.Errorf("Session.PeerRecordSizeLimit %d, want %d", got, limit)
		}
		_, err := c.Write(data)
		return err
	}
	read := func(p *peer) {
		var got []byte
		largest := 0
		for len(got) < total {
			rec, err := p.recordRaw()
			if err != nil {
				t.Fatalf("after %d bytes: %v", len(got), err)
			}
			typ, b, err := p.in.open(rec[:recordHeaderLen], rec[recordHeaderLen:])
			if err != nil || typ != recordTypeApplicationData {
				t.Fatalf("engine sent %d %x: %v", typ, b, err)
			}
			largest = max(largest, len(b))
			got = append(got, b...)
		}
		if largest != limit-1 || !bytes.Equal(got, data) {
			t.Errorf("largest record %d bytes, want %d; data intact %v", largest, limit-1, bytes.Equal(got, data))
		}
	}
	t.Run("client", func(t *testing.T) {
		err, a := hostileClient(t, &Config{RecordSizeLimit: 1024}, serverScript{dhe: true,
			ee: func(ee *encryptedExtensions) { ee.recordSizeLimit = limit }, after: read}, write)
		if err != nil || a.ok {
			t.Fatalf("engine %v, peer saw %v", err, a)
		}
	})
	t.Run("server", func(t *testing.T) {
		err, a := hostileServer(t, nil, clientScript{
			hello: func(ch *clientHello) { ch.recordSizeLimit = limit }, after: read}, write)
		if err != nil || a.ok {
			t.Fatalf("engine %v, peer saw %v", err, a)
		}
	})
}

// recordRaw reads one record and returns its header and body, for
// halfConn.open.
func (p *peer) recordRaw() ([]byte, error) {
	var hdr [recordHeaderLen]byte
	if _, err := io.ReadFull(p.conn, hdr[:]); err != nil {
		return nil, err
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(p.conn, body); err != nil {
		return nil, err
	}
	return append(hdr[:], body...), nil
}

// TestHostileAfterFailure: once the engine has failed after the
// handshake, it sends its alert (fatal) and then nothing, and Write and
// KeyUpdate report the failure.
func TestHostileAfterFailure(t *testing.T) {
	var readErr, writeErr, updateErr error
	post := func(c *Conn) error {
		readErr = readAll(c)
		_, writeErr = c.Write([]byte("must not be sent"))
		updateErr = c.KeyUpdate(false)
		return readErr
	}
	err, a := hostileServer(t, nil, clientScript{after: func(p *peer) {
		p.send(recordTypeHandshake, marshalKeyUpdate(2))
		typ, data, err := p.record()
		if err != nil || typ != recordTypeAlert || !bytes.Equal(data, []byte{2, byte(AlertIllegalParameter)}) {
			t.Errorf("engine sent %d %x %v, want a fatal illegal_parameter alert", typ, data, err)
		}
		if b, err := io.ReadAll(p.conn); len(b) != 0 || err != nil {
			t.Errorf("engine sent %d more bytes after its alert (%v)", len(b), err)
		}
	}}, post)
	if a.ok {
		t.Errorf("peer saw %v after the engine's alert", a)
	}
	for name, err := range map[string]error{"Read": err, "Write": writeErr, "KeyUpdate": updateErr} {
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Alert != AlertIllegalParameter || ae.Received {
			t.Errorf("%s after the failure: %v, want the illegal_parameter the engine sent", name, err)
		}
	}

	// close_notify goes out as a warning.
	err, a = hostileServer(t, nil, clientScript{after: func(p *peer) {
		typ, data, err := p.record()
		if err != nil || typ != recordTypeAlert || !bytes.Equal(data, []byte{1, byte(AlertCloseNotify)}) {
			t.Errorf("engine sent %d %x %v, want close_notify at level 1", typ, data, err)
		}
	}}, func(c *Conn) error { return c.CloseWrite() })
	if err != nil || a.ok {
		t.Errorf("close_notify: engine %v, peer saw %v", err, a)
	}
}

// TestReadError: EOF at a record boundary is io.EOF; inside a record it
// is io.ErrUnexpectedEOF.
func TestReadError(t *testing.T) {
	if err := readError(io.EOF, false); err != io.EOF {
		t.Errorf("EOF between records: %v", err)
	}
	if err := readError(io.EOF, true); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("EOF inside a record: %v", err)
	}
	if err := readError(io.ErrUnexpectedEOF, false); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("EOF inside a header: %v", err)
	}
}

// TestErrorStrings: what the daemon's log lines say about alerts, groups
// and a refused record_size_limit (operators read these; a mutant that
// garbles them lived).
func TestErrorStrings(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{(&AlertError{Alert: AlertDecodeError, Received: true}).Error(), "tls13: peer sent alert decode_error"},
		{(&AlertError{Alert: AlertDecodeError, Err: errors.New("short binder")}).Error(), "tls13: short binder (sent alert decode_error)"},
		{(&AlertError{Alert: AlertDecodeError}).Error(), "tls13: sent alert decode_error"},
		{Group(0).String(), "none"},
		{X25519.String(), "x25519"},
		{Group(0x1234).String(), "Group(0x1234)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	err := (&Config{PSKs: []PSK{testPSK("id", crypto.SHA256)}, RecordSizeLimit: 63}).check(true)
	if err == nil || !strings.Contains(err.Error(), "out of range 64..16385") {
		t.Errorf("record_size_limit 63: %v, want the range 64..16385 named", err)
	}
}

// TestHostilePostHandshakeBounds: the edges of what the engine reads
// after the handshake, each followed by the peer's close_notify so that
// an engine that only waited for more (instead of acting on what it has)
// ends with io.EOF rather than the alert.
func TestHostilePostHandshakeBounds(t *testing.T) {
	closeNotify := func(p *peer) { p.send(recordTypeAlert, []byte{1, 0}) }
	then := func(steps ...func(p *peer)) func(p *peer) {
		return func(p *peer) {
			for _, s := range steps {
				s(p)
			}
		}
	}
	nextKey := func(p *peer) {
		p.send(recordTypeHandshake, marshalKeyUpdate(0))
		p.out.setTrafficSecret(p.out.suite, NextTrafficSecret(p.out.suite, p.out.secret))
	}
	keyUpdates := func(n int) func(p *peer) {
		return func(p *peer) {
			for range n {
				nextKey(p)
			}
		}
	}
	// An empty application data record carries no data: it does not
	// reset the KeyUpdate count.
	emptyData := func(p *peer) { p.send(recordTypeApplicationData, nil) }
	sides := []struct {
		name string
		run  func(t *testing.T, after func(*peer), post func(*Conn) error) (error, engineAlert)
	}{
		{"server", func(t *testing.T, after func(*peer), post func(*Conn) error) (error, engineAlert) {
			return hostileServer(t, nil, clientScript{after: after}, post)
		}},
		{"client", func(t *testing.T, after func(*peer), post func(*Conn) error) (error, engineAlert) {
			return hostileClient(t, nil, serverScript{dhe: true, after: after}, post)
		}},
	}
	for _, sd := range sides {
		t.Run(sd.name, func(t *testing.T) {
			t.Run("header only, too large", func(t *testing.T) {
				err, a := sd.run(t, then(func(p *peer) {
					p.send(recordTypeHandshake, []byte{typeNewSessionTicket, 0, 0x40, 1}) // 2^14+1
				}, closeNotify), readAll)
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("message with an empty body", func(t *testing.T) {
				err, a := sd.run(t, then(func(p *peer) {
					p.send(recordTypeHandshake, []byte{typeFinished, 0, 0, 0})
				}, closeNotify), readAll)
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("empty data does not reset the KeyUpdate count", func(t *testing.T) {
				err, a := sd.run(t, then(keyUpdates(maxKeyUpdates), emptyData, nextKey, closeNotify), readAll)
				wantOutcome(t, err, a, AlertUnexpectedMessage, false, syscall.EACCES)
			})
			t.Run("nothing is read after close_notify", func(t *testing.T) {
				err, a := sd.run(t, then(closeNotify, func(p *peer) {
					p.send(recordTypeApplicationData, []byte("after the end"))
				}), func(c *Conn) error {
					buf := make([]byte, 64)
					for i := range 2 {
						if n, err := c.Read(buf); err != io.EOF {
							return fmt.Errorf("read %d after close_notify: %q, %v; want io.EOF", i+1, buf[:n], err)
						}
					}
					return io.EOF
				})
				if err != io.EOF || a.ok {
					t.Errorf("engine %v, peer saw %v", err, a)
				}
			})
		})
	}
	// A client skips a NewSessionTicket of the largest size it buffers.
	t.Run("client/ticket of the largest size", func(t *testing.T) {
		err, a := hostileClient(t, nil, serverScript{dhe: true, after: then(func(p *peer) {
			msg := append([]byte{typeNewSessionTicket, 0, 0x40, 0}, make([]byte, maxPostHandshakeMessage)...)
			p.send(recordTypeHandshake, msg[:maxPlaintext])
			p.send(recordTypeHandshake, msg[maxPlaintext:])
		}, closeNotify)}, readAll)
		if err != io.EOF || a.ok {
			t.Errorf("engine %v, peer saw %v", err, a)
		}
	})
}

// TestWriteResult: Write reports what it wrote, and a failed send is
// returned, not counted, and sticky.
func TestWriteResult(t *testing.T) {
	psk := testPSK("write", crypto.SHA256)
	r := mustHandshake(t, &Config{PSKs: []PSK{psk}}, &Config{GetPSK: keyring(psk)})
	msg := bytes.Repeat([]byte("w"), 3*maxPlaintext/2) // two records
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r.server, make([]byte, len(msg)))
		done <- err
	}()
	if n, err := r.client.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(msg))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.client.conn.Close()
	n, err := r.client.Write([]byte("lost"))
	if n != 0 || err == nil {
		t.Fatalf("Write on a closed connection = %d, %v; want 0 and an error", n, err)
	}
	if _, err2 := r.client.Write([]byte("again")); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Write = %v, want the sticky %v", err2, err)
	}
}
