package nvme

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"encoding/base64"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// The derivations of NVMe TCP Transport 1.0, 3.6.1.3, and TP8018, checked
// against libnvme's src/nvme/linux.c (derive_retained_key,
// derive_psk_digest, derive_tls_key, gen_tls_identity and their caller
// derive_nvme_keys) and the kernel's drivers/nvme/common/auth.c
// (nvme_auth_generate_digest, nvme_auth_derive_tls_psk):
//
//   - HKDF-Extract uses no salt (OpenSSL's default, the kernel's zero
//     salt of hash length: the same PRK).
//   - HKDF-Expand-Label is RFC 8446's: HkdfLabel with a big-endian
//     length and length-prefixed "tls13 "+label and context. libnvme
//     before its fix, and nvme-cli --compat, used a little-endian length
//     and no length prefixes; those keys are not produced here.
//   - The retained key uses the interchange hash (xx) and keeps the
//     configured key's length; the digest and TLS PSK use the identity's
//     hash (hh) and keep the input key's length.

// RetainedKey derives the retained PSK from a configured PSK:
//
//	HKDF-Expand-Label(HKDF-Extract(0, configured), "HostNQN", hostNQN, len(configured))
//
// with the interchange hash, or returns a copy of the configured PSK for
// xx = 00.
func RetainedKey(ic Interchange, hostNQN string) []byte {
	if ic.Hash == 0 {
		return append([]byte(nil), ic.Key...)
	}
	prk := extract(ic.Hash, ic.Key)
	defer clear(prk)
	return tls13.ExpandLabel(ic.Hash, prk, "HostNQN", []byte(hostNQN), len(ic.Key))
}

// Digest computes the PSK digest of a version 1 identity:
//
//	base64(HMAC-h(retained, hostNQN || " " || subsysNQN || " " || "NVMe-over-Fabrics"))
//
// where h is the identity's hash.
func Digest(h crypto.Hash, retained []byte, hostNQN, subsysNQN string) string {
	m := hmac.New(h.New, retained)
	m.Write([]byte(hostNQN + " " + subsysNQN + " NVMe-over-Fabrics"))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// TLSPSK derives the TLS PSK for an identity from a retained (or
// generated) PSK:
//
//	HKDF-Expand-Label(HKDF-Extract(0, retained), "nvme-tls-psk", context, len(retained))
//
// with the identity's hash, where context is the identity string for
// version 0 and "<hh> <digest>" for version 1. libnvme (derive_tls_key)
// uses the NUL-less identity for version 0, although the specification
// counts a NUL in the identity.
func TLSPSK(id Identity, retained []byte) []byte {
	ctx := id.String()
	if id.Version == 1 {
		ctx = hashID(id.Hash) + " " + id.Digest
	}
	prk := extract(id.Hash, retained)
	defer clear(prk)
	return tls13.ExpandLabel(id.Hash, prk, "nvme-tls-psk", []byte(ctx), len(retained))
}

// extract is HKDF-Extract with no salt: RFC 5869 then uses a string of
// zeros as long as the hash, which HMAC treats like an empty key.
func extract(h crypto.Hash, secret []byte) []byte {
	prk, err := hkdf.Extract(h.New, secret, nil)
	if err != nil {
		panic("nvme: HKDF-Extract: " + err.Error()) // only for FIPS-rejected parameters
	}
	return prk
}
