package tpmkey

import (
	"crypto"
	"fmt"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
)

// PublicKey returns the public key of a TSS2 PRIVATE KEY PEM file, read
// from the file's public area: no TPM is needed, so a policy can match
// the key against its certificate when it loads.
func PublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	kf, err := keyfile.Decode(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: %w", err)
	}
	pub, err := kf.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("tpmkey: public key: %w", err)
	}
	return pub, nil
}
