package handshake

import "github.com/tlshd-go/tlshd-go/config"

// requestKeyrings is what a request links: the policy's keyrings, then
// the consumers' own .nvme, .nfs and .nfsd, which tlshd links whatever its
// configuration says (.nvme since 1.0, .nfs and .nfsd since 1.2): a policy
// that names other keyrings adds to them rather than cutting NVMe or NFS
// off its keys. The Keyring skips those not loaded (no nvme or nfs module).
// Duplicates are dropped, so each keyring is linked and counted once.
func requestKeyrings(policy []config.Keyring) []config.Keyring {
	out := make([]config.Keyring, 0, len(policy)+3)
	seen := map[config.Keyring]bool{}
	for _, l := range [][]config.Keyring{policy, {{Name: ".nvme"}, {Name: ".nfs"}, {Name: ".nfsd"}}} {
		for _, k := range l {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}
