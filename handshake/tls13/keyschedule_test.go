package tls13

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdh"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// loadVectors reads testdata/rfc8448.txt: "name = hex" lines.
func loadVectors(t *testing.T) func(string) []byte {
	t.Helper()
	f, err := os.Open("testdata/rfc8448.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := map[string][]byte{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		b, err := hex.DecodeString(strings.TrimSpace(val))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		v[strings.TrimSpace(k)] = b
	}
	return func(name string) []byte {
		b, ok := v[name]
		if !ok {
			t.Fatalf("no vector %q", name)
		}
		return b
	}
}

func check(t *testing.T, name string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", name, got, want)
	}
}

func TestRFC8448Simple1RTT(t *testing.T) {
	v := loadVectors(t)
	h := crypto.SHA256

	// The X25519 exchange with the trace's keys.
	priv, err := ecdh.X25519().NewPrivateKey(v("s3.client_private"))
	if err != nil {
		t.Fatal(err)
	}
	shared, err := ecdhKey{priv}.finish(v("s3.server_public"))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "shared", shared, v("s3.shared"))

	// Our parsers accept the trace's messages.
	var ch clientHello
	if err := ch.unmarshal(v("s3.client_hello")); err != nil {
		t.Fatal(err)
	}
	if ch.serverName != "server" || len(ch.keyShares) != 1 || ch.keyShares[0].group != X25519 ||
		ch.recordSizeLimit != 0x4001 || ch.pskIdentities != nil {
		t.Errorf("ClientHello parsed as %+v", ch)
	}
	var sh serverHello
	if err := sh.unmarshal(v("s3.server_hello")); err != nil {
		t.Fatal(err)
	}
	if sh.cipherSuite != TLS_AES_128_GCM_SHA256 || sh.keyShare.group != X25519 || sh.supportedVersion != VersionTLS13 {
		t.Errorf("ServerHello parsed as %+v", sh)
	}
	var ee encryptedExtensions
	if err := ee.unmarshal(v("s3.encrypted_extensions")); err != nil {
		t.Fatal(err)
	}
	if !ee.serverNameAck || ee.recordSizeLimit != 0x4001 {
		t.Errorf("EncryptedExtensions parsed as %+v", ee)
	}

	// The key schedule, stage by stage.
	es := newEarlySecret(h, nil)
	check(t, "early secret", es.secret, v("s3.early_secret"))
	hs := es.handshakeSecret(shared)
	check(t, "handshake secret", hs.secret, v("s3.handshake_secret"))
	tr := h.New()
	tr.Write(v("s3.client_hello"))
	tr.Write(v("s3.server_hello"))
	cHS, sHS := hs.clientTrafficSecret(tr), hs.serverTrafficSecret(tr)
	check(t, "c hs traffic", cHS, v("s3.c_hs_traffic"))
	check(t, "s hs traffic", sHS, v("s3.s_hs_traffic"))
	key, iv := TrafficKey(TLS_AES_128_GCM_SHA256, sHS)
	check(t, "s hs key", key, v("s3.s_hs_key"))
	check(t, "s hs iv", iv, v("s3.s_hs_iv"))
	key, iv = TrafficKey(TLS_AES_128_GCM_SHA256, cHS)
	check(t, "c hs key", key, v("s3.c_hs_key"))
	check(t, "c hs iv", iv, v("s3.c_hs_iv"))

	tr.Write(v("s3.encrypted_extensions"))
	tr.Write(v("s3.certificate"))
	tr.Write(v("s3.certificate_verify"))
	check(t, "server finished", finishedMAC(h, sHS, tr.Sum(nil)), v("s3.server_finished_verify"))
	fin, err := unmarshalFinished(v("s3.server_finished"), h.Size())
	if err != nil {
		t.Fatal(err)
	}
	check(t, "server Finished message", fin, v("s3.server_finished_verify"))
	tr.Write(v("s3.server_finished"))

	ms := hs.masterSecret()
	check(t, "master secret", ms.secret, v("s3.master_secret"))
	cAP, sAP := ms.clientTrafficSecret(tr), ms.serverTrafficSecret(tr)
	check(t, "c ap traffic", cAP, v("s3.c_ap_traffic"))
	check(t, "s ap traffic", sAP, v("s3.s_ap_traffic"))
	check(t, "client finished", finishedMAC(h, cHS, tr.Sum(nil)), v("s3.client_finished_verify"))
	check(t, "client Finished message", marshalFinished(finishedMAC(h, cHS, tr.Sum(nil))), v("s3.client_finished"))
	key, iv = TrafficKey(TLS_AES_128_GCM_SHA256, sAP)
	check(t, "s ap key", key, v("s3.s_ap_key"))
	check(t, "s ap iv", iv, v("s3.s_ap_iv"))
	key, iv = TrafficKey(TLS_AES_128_GCM_SHA256, cAP)
	check(t, "c ap key", key, v("s3.c_ap_key"))
	check(t, "c ap iv", iv, v("s3.c_ap_iv"))

	// The stages zero what they leave behind.
	if !bytes.Equal(es.secret, make([]byte, 32)) || !bytes.Equal(hs.secret, make([]byte, 32)) {
		t.Error("earlier stages were not zeroed")
	}
}

func TestRFC8448PSKBinder(t *testing.T) {
	v := loadVectors(t)
	h := crypto.SHA256
	raw := append(bytes.Clone(v("s4.client_hello_prefix")), v("s4.binders")...)

	// Parsing finds the binders list exactly where Truncate cuts.
	var ch clientHello
	if err := ch.unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	check(t, "Truncate(ClientHello)", ch.truncated(), v("s4.client_hello_prefix"))
	if len(ch.pskIdentities) != 1 || len(ch.pskIdentities[0].identity) != 0xb2 ||
		ch.pskIdentities[0].age != 0xfad6aacb || !ch.earlyData || len(ch.pskBinders) != 1 {
		t.Errorf("pre_shared_key parsed as %+v", ch)
	}
	check(t, "binder in the message", ch.pskBinders[0], v("s4.binder"))

	es := newEarlySecret(h, v("s4.psk"))
	check(t, "early secret", es.secret, v("s4.early_secret"))
	th := h.New()
	th.Write(ch.truncated())
	check(t, "binder hash", th.Sum(nil), v("s4.binder_hash"))
	bk := es.binderKeyLabel("res binder")
	check(t, "binder key", bk, v("s4.binder_key"))
	check(t, "binder", finishedMAC(h, bk, th.Sum(nil)), v("s4.binder"))

	// updateBinders patches exactly the binder bytes Truncate leaves out.
	ch2 := ch
	ch2.raw = bytes.Clone(raw)
	ch2.updateBinders([][]byte{make([]byte, 32)})
	check(t, "patched prefix", ch2.truncated(), v("s4.client_hello_prefix"))
	check(t, "patched binders", ch2.raw[len(ch2.raw)-35:], append([]byte{0, 0x21, 0x20}, make([]byte, 32)...))

	// The PSK handshake's secrets follow from the early secret.
	hs := es.handshakeSecret(v("s4.shared"))
	check(t, "handshake secret", hs.secret, v("s4.handshake_secret"))
	tr := h.New()
	tr.Write(raw)
	tr.Write(v("s4.server_hello"))
	cHS, sHS := hs.clientTrafficSecret(tr), hs.serverTrafficSecret(tr)
	check(t, "c hs traffic", cHS, v("s4.c_hs_traffic"))
	check(t, "s hs traffic", sHS, v("s4.s_hs_traffic"))
	tr.Write(v("s4.encrypted_extensions"))
	check(t, "server finished", finishedMAC(h, sHS, tr.Sum(nil)), v("s4.server_finished_verify"))
	tr.Write(v("s4.server_finished"))
	ms := hs.masterSecret()
	check(t, "master secret", ms.secret, v("s4.master_secret"))
	sAP := ms.serverTrafficSecret(tr)
	check(t, "c ap traffic", ms.clientTrafficSecret(tr), v("s4.c_ap_traffic"))
	check(t, "s ap traffic", sAP, v("s4.s_ap_traffic"))
	key, iv := TrafficKey(TLS_AES_128_GCM_SHA256, sAP)
	check(t, "s ap key", key, v("s4.s_ap_key"))
	check(t, "s ap iv", iv, v("s4.s_ap_iv"))
}

func TestNextTrafficSecret(t *testing.T) {
	// RFC 8446, 7.2: application_traffic_secret_N+1 =
	// HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length).
	secret := bytes.Repeat([]byte{0x42}, 48)
	got := NextTrafficSecret(TLS_AES_256_GCM_SHA384, secret)
	want := ExpandLabel(crypto.SHA384, secret, "traffic upd", nil, 48)
	check(t, "traffic upd", got, want)
	if len(NextTrafficSecret(TLS_AES_128_GCM_SHA256, secret[:32])) != 32 {
		t.Error("SHA-256 suite update length")
	}
}
