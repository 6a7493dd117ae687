package handshake

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
	"github.com/tlshd-go/tlshd-go/rekey"
)

// checkKeyLog: both sides of a connection served by the daemon logged
// the same four lines per handshake, whose traffic secrets are the keys
// given to kTLS, and every handshake line says keylog=true.
func checkKeyLog(t *testing.T, td *testDaemon, kl *testtool.Buffer, fd int) {
	t.Helper()
	td.stop(t)
	lines := strings.Split(strings.TrimSpace(kl.String()), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d key log lines, want 4 per side:\n%s", len(lines), kl.String())
	}
	count := map[string]int{}
	for _, l := range lines {
		count[l]++
	}
	tx, err := ktls.ParseCryptoInfo(td.inst.txInfo(fd))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for l, n := range count {
		f := strings.Fields(l)
		if n != 2 || len(f) != 3 {
			t.Errorf("line %q logged %d times, want once per side", l, n)
			continue
		}
		if f[0] == "CLIENT_TRAFFIC_SECRET_0" {
			secret, _ := hex.DecodeString(f[2])
			k := rekey.Keys(tls13.CipherSuite(tx.Suite), tls13.TrafficSecret{Secret: secret})
			found = bytes.Equal(k.Key, tx.Key) && bytes.Equal(k.IV, tx.IV)
		}
	}
	if !found {
		t.Error("the logged client traffic secret is not the one installed")
	}
	if n := strings.Count(td.logs.String(), "msg=handshake"); n != 2 || strings.Count(td.logs.String(), "keylog=true") != n {
		t.Errorf("handshake lines without keylog=true:\n%s", td.logs)
	}
}

func TestKeyLogBothPaths(t *testing.T) {
	t.Run("psk", func(t *testing.T) {
		td := newTestDaemon(t, "")
		kl := &testtool.Buffer{}
		td.KeyLog = kl
		td.keys.add(7, nvmeID, key32(3))
		host, tgt := consumerPair(t)
		td.start()
		ph := td.fk.Submit(int(host.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{7}})
		pt := td.fk.Submit(int(tgt.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{0}})
		if rh, rt := wait(t, ph), wait(t, pt); rh.Status != 0 || rt.Status != 0 {
			t.Fatalf("host %+v target %+v\n%s", rh, rt, td.logs)
		}
		checkKeyLog(t, td, kl, ph.FD())
	})
	t.Run("x509", func(t *testing.T) {
		p := newPKI(t)
		td := newTestDaemon(t, p.policy("", ""))
		kl := &testtool.Buffer{}
		td.KeyLog = kl
		td.start()
		_, _, fc, _ := x509Pair(t, td,
			fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.X509, PeerName: "nfs.example.com"},
			fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.X509})
		checkKeyLog(t, td, kl, fc)
	})
	t.Run("off", func(t *testing.T) {
		td := newTestDaemon(t, "")
		td.keys.add(7, nvmeID, key32(3))
		host, tgt := consumerPair(t)
		td.start()
		ph := td.fk.Submit(int(host.Fd()), fakekernel.Params{MessageType: genl.ClientHello, Auth: genl.PSK, PeerIdentities: []int32{7}})
		pt := td.fk.Submit(int(tgt.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{0}})
		if rh, rt := wait(t, ph), wait(t, pt); rh.Status != 0 || rt.Status != 0 {
			t.Fatalf("host %+v target %+v\n%s", rh, rt, td.logs)
		}
		td.stop(t)
		if strings.Contains(td.logs.String(), "keylog") {
			t.Errorf("keylog attribute while off:\n%s", td.logs)
		}
	})
}
