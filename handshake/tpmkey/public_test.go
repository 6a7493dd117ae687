package tpmkey

import (
	"crypto/ecdsa"
	"testing"
)

func TestPublicKey(t *testing.T) {
	tpm := startSWTPM(t)
	pemBytes := createKey(t, tpm, ECDSAP256, nil)
	pub, err := PublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	k := openKey(t, pemBytes, tpm, nil)
	if !k.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Error("PublicKey differs from the loaded key's")
	}
	if _, err := PublicKey([]byte("not a key file")); err == nil {
		t.Error("junk accepted")
	}
}
