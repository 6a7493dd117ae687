package handshake

import (
	"context"
	"crypto"
	"slices"
	"testing"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/genl/fakekernel"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

func TestRequestKeyrings(t *testing.T) {
	nvme, nfs, nfsd := config.Keyring{Name: ".nvme"}, config.Keyring{Name: ".nfs"}, config.Keyring{Name: ".nfsd"}
	for _, tc := range []struct {
		policy, want []config.Keyring
	}{
		{nil, []config.Keyring{nvme, nfs, nfsd}},
		{[]config.Keyring{{Name: "mine"}, {Serial: 42}}, []config.Keyring{{Name: "mine"}, {Serial: 42}, nvme, nfs, nfsd}},
		{[]config.Keyring{nfsd, nvme, nfs}, []config.Keyring{nfsd, nvme, nfs}},
		{[]config.Keyring{{Name: "mine"}, {Name: "mine"}}, []config.Keyring{{Name: "mine"}, nvme, nfs, nfsd}},
	} {
		if got := requestKeyrings(tc.policy); !slices.Equal(got, tc.want) {
			t.Errorf("requestKeyrings(%v) = %v, want %v", tc.policy, got, tc.want)
		}
	}
}

// TestNVMeKeyringWithPolicyKeyrings: a policy naming its own keyrings
// still finds an NVMe target's key in .nvme, as tlshd does.
func TestNVMeKeyringWithPolicyKeyrings(t *testing.T) {
	td := newTestDaemon(t, "[global]\nkeyrings = [\"mine\"]\n")
	td.keys.rings["mine"] = 77
	td.keys.add(202, nvmeID, key32(2))
	consumer, peer := socketPair(t)
	td.start()
	p := td.fk.Submit(int(consumer.Fd()), fakekernel.Params{MessageType: genl.ServerHello, Auth: genl.PSK, PeerIdentities: []int32{0}})
	cli := tls13.Client(peer, &tls13.Config{PSKs: []tls13.PSK{{Identity: []byte(nvmeID), Key: key32(2), Hash: crypto.SHA256}}})
	if err := cli.Handshake(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, td.logs)
	}
	if r := wait(t, p); r.Status != 0 || len(r.RemoteAuth) != 1 || r.RemoteAuth[0] != 202 {
		t.Fatalf("DONE %+v, want status 0 remote auth [202]", r)
	}
}
