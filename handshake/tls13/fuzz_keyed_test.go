package tls13

// Fuzzing past the keys: the hostile peers of hostile_test.go, with a
// known PSK and fixed randomness, complete the handshake up to a chosen
// point and then send fuzzed plaintext sealed under the right keys, so
// that the Finished checks, EncryptedExtensions in context, the keyed
// record layer, KeyUpdate and the second ClientHello are reached, which
// random ciphertext never would.

import (
	"bytes"
	"crypto"
	"errors"
	"io"
	"testing"
)

// keyedRecords turns fuzz bytes into records: each is a content type,
// an amount of padding and a 16-bit length, then that much content
// (shorter at the end of the input).
func keyedRecords(data []byte) (recs []struct {
	typ     uint8
	padding int
	content []byte
}) {
	for len(data) >= 4 && len(recs) < 64 {
		typ, pad, n := data[0], int(data[1]), int(data[2])<<8|int(data[3])
		data = data[4:]
		n = min(n, len(data))
		recs = append(recs, struct {
			typ     uint8
			padding int
			content []byte
		}{typ, pad, data[:n]})
		data = data[n:]
	}
	return recs
}

// sendKeyed seals the fuzzed records under p.out. A record that ends with
// a well-formed KeyUpdate switches p.out to the next secret after it, as
// the engine's reading side does, so later records still decrypt.
func sendKeyed(p *peer, data []byte) {
	var hand []byte
	for _, r := range keyedRecords(data) {
		p.sendPadded(r.typ, r.content, r.padding)
		if r.typ != recordTypeHandshake {
			hand = nil
			continue
		}
		hand = append(hand, r.content...)
		update := false
		for len(hand) >= 4 && len(hand) >= 4+msgLen(hand) {
			n := 4 + msgLen(hand)
			if _, err := unmarshalKeyUpdate(hand[:n]); err == nil {
				update = true
			}
			hand = hand[n:]
		}
		if update && len(hand) == 0 {
			p.out.setTrafficSecret(p.out.suite, NextTrafficSecret(p.out.suite, p.out.secret))
		}
	}
}

func rec(typ uint8, content []byte) []byte {
	return append([]byte{typ, 0, byte(len(content) >> 8), byte(len(content))}, content...)
}

// checkFuzzOutcome: the engine ended with an alert or a hang-up, and
// never panicked (hostileRun turns a panic into a failure).
func checkFuzzOutcome(t *testing.T, err error) {
	t.Helper()
	var ae *AlertError
	if err != nil && !errors.As(err, &ae) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("engine error of an unexpected kind: %v", err)
	}
}

// FuzzServerKeyed: a client that sends the fuzzed records under its
// handshake keys in place of its Finished, or (first byte odd) after a
// correct Finished under its application keys, where KeyUpdate,
// post-handshake messages and application data are read.
func FuzzServerKeyed(f *testing.F) {
	f.Add(append([]byte{0}, rec(recordTypeHandshake, []byte{typeFinished, 0, 0, 32})...))
	f.Add(append([]byte{1}, rec(recordTypeHandshake, marshalKeyUpdate(1))...))
	f.Add(append(append([]byte{1}, rec(recordTypeHandshake, marshalKeyUpdate(0))...), rec(recordTypeApplicationData, []byte("hi"))...))
	f.Add(append([]byte{1}, rec(recordTypeAlert, []byte{1, 0})...))
	f.Add(append([]byte{1}, rec(recordTypeHandshake, []byte{typeNewSessionTicket, 0, 0, 1})...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s := clientScript{}
		if data[0]&1 == 0 {
			s.finished = func([]byte) []byte { return nil }
			s.beforeFinished = func(p *peer) { sendKeyed(p, data[1:]) }
		} else {
			s.after = func(p *peer) { sendKeyed(p, data[1:]) }
		}
		err, _ := hostileServer(t, nil, s, readAll)
		checkFuzzOutcome(t, err)
		if data[0]&1 == 0 && err == nil {
			t.Fatal("handshake completed without the client's Finished")
		}
	})
}

// FuzzClientKeyed: a server whose ServerHello is right and whose
// encrypted flight is fuzzed. With the first byte's low bit set, the first
// record's content is taken as the EncryptedExtensions and a correct
// Finished over it follows, so the client judges fuzzed extensions in
// context and may complete; with bit 1 set, the flight is right and the
// fuzzed records come after the handshake, under application keys.
func FuzzClientKeyed(f *testing.F) {
	ee := must((&encryptedExtensions{}).marshal())
	f.Add(append([]byte{1}, rec(recordTypeHandshake, ee)...))
	f.Add(append([]byte{1}, rec(recordTypeHandshake, []byte{typeEncryptedExtensions, 0, 0, 8, 0, 6, 0, 28, 0, 2, 0x10, 0})...))
	f.Add(append([]byte{0}, rec(recordTypeHandshake, ee)...))
	f.Add(append([]byte{2}, rec(recordTypeHandshake, marshalKeyUpdate(1))...))
	f.Add(append([]byte{2}, rec(recordTypeHandshake, []byte{typeNewSessionTicket, 0, 0, 1, 0})...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s := serverScript{}
		cfg := &Config{PSKModes: []PSKMode{PSKModeKE}, RecordSizeLimit: 1024}
		switch {
		case data[0]&2 != 0:
			s.after = func(p *peer) { sendKeyed(p, data[1:]) }
		case data[0]&1 != 0:
			recs := keyedRecords(data[1:])
			if len(recs) == 0 {
				return
			}
			s.eeRaw = bytes.Clone(recs[0].content)
			s.flight = func(p *peer, ee, fin []byte) {
				p.send(recordTypeHandshake, append(bytes.Clone(ee), fin...))
				for _, r := range recs[1:] {
					p.sendPadded(r.typ, r.content, r.padding)
				}
				p.hangUp() // the fuzzed flight may leave the engine waiting
			}
		default:
			s.flight = func(p *peer, ee, fin []byte) {
				sendKeyed(p, data[1:])
				p.hangUp() // no Finished will come: let the engine see the end
			}
		}
		err, _ := hostileClient(t, cfg, s, readAll)
		checkFuzzOutcome(t, err)
		if data[0]&3 == 0 && err == nil {
			t.Fatal("handshake completed without the server's Finished")
		}
	})
}

// patch applies edits to b: each is an operation, a 16-bit offset and a
// byte (set, insert or delete), and then fixes the handshake header's
// length so the message stays framed.
func patch(b, edits []byte) []byte {
	b = bytes.Clone(b)
	for len(edits) >= 4 && len(b) > 4 {
		op, off, v := edits[0]%3, (int(edits[1])<<8|int(edits[2]))%len(b), edits[3]
		edits = edits[4:]
		if off < 4 {
			off += 4
			if off >= len(b) {
				continue
			}
		}
		switch op {
		case 0:
			b[off] = v
		case 1:
			b = append(b[:off], append([]byte{v}, b[off:]...)...)
		case 2:
			b = append(b[:off], b[off+1:]...)
		}
	}
	n := len(b) - 4
	b[1], b[2], b[3] = byte(n>>16), byte(n>>8), byte(n)
	return b
}

// resign recomputes, in a ClientHello that still parses, the binder of
// every identity that is one of psks, over prefix and the message's own
// truncation, so that edits reach past the binder check.
func resign(raw []byte, psks []PSK, prefix []byte) []byte {
	var m clientHello
	if m.unmarshal(raw) != nil || m.pskIdentities == nil {
		return raw
	}
	binders := make([][]byte, len(m.pskBinders))
	for i := range m.pskBinders {
		binders[i] = m.pskBinders[i]
		for _, psk := range psks {
			if i < len(m.pskIdentities) && bytes.Equal(psk.Identity, m.pskIdentities[i].identity) && psk.Hash.Size() == len(binders[i]) {
				h := psk.Hash.New()
				h.Write(prefix)
				h.Write(m.truncated())
				binders[i] = finishedMAC(psk.Hash, newEarlySecret(psk.Hash, psk.Key).binderKey(), h.Sum(nil))
			}
		}
	}
	m.updateBinders(binders)
	return m.raw
}

// FuzzSecondClientHello: the server's HelloRetryRequest path. The client
// sends a correct first ClientHello, the server asks for P-256, and the
// second ClientHello is the correct one edited by the fuzz input, its
// binders recomputed; whatever the server accepts, the client completes.
func FuzzSecondClientHello(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 10, 1})               // the random
	f.Add([]byte{1, 0, 40, 0})               // an inserted byte
	f.Add([]byte{2, 0, 90, 0, 0, 0, 200, 7}) // a deleted byte and another change
	other := testPSK("NVMe0R02 other", crypto.SHA384)
	psks := []PSK{hostilePSK, other}
	f.Fuzz(func(t *testing.T, edits []byte) {
		s := clientScript{psks: psks, groups: []Group{X25519, P256},
			signed2: func(raw, prefix []byte) []byte { return resign(patch(raw, edits), psks, prefix) },
		}
		cfg := &Config{Groups: []Group{P256}, GetPSK: keyring(psks...)}
		err, _ := hostileServer(t, cfg, s, nil)
		checkFuzzOutcome(t, err)
		if len(edits) < 4 && err != nil {
			t.Fatalf("unedited retry failed: %v", err)
		}
	})
}
