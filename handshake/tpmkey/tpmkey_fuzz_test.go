package tpmkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	"github.com/google/go-tpm/tpm2"
)

// deadTPM answers every command with an error: the fuzz target stops at
// the first TPM command, after all of Open's parsing and checks.
type deadTPM struct{ sent int }

var errDeadTPM = errors.New("no TPM in this test")

func (d *deadTPM) Send([]byte) ([]byte, error) { d.sent++; return nil, errDeadTPM }
func (d *deadTPM) Close() error                { return nil }

// fuzzKeyFile is a TSS2 PRIVATE KEY file for a P-256 signing key, made
// without a TPM (the private blob is opaque to Open).
func fuzzKeyFile(f *testing.F, sign bool, auth bool) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	e, err := k.PublicKey.ECDH()
	if err != nil {
		f.Fatal(err)
	}
	pt := e.Bytes() // 0x04 || X || Y
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, SignEncrypt: sign,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			CurveID: tpm2.TPMECCNistP256,
			Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(
				tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: pt[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: pt[33:]},
		}),
	}
	var opts []keyfile.TPMKeyOption
	if !auth {
		opts = append(opts, keyfile.WithUserAuth(nil))
	}
	kf := keyfile.NewTPMKey(keyfile.OIDLoadableKey, tpm2.New2B(pub),
		tpm2.TPM2BPrivate{Buffer: make([]byte, 64)}, opts...)
	return kf.Bytes()
}

// FuzzOpen: a TPM key file (TSS2 PRIVATE KEY PEM) is parsed and checked
// without panicking; only a file that passes every check reaches the
// TPM, and then the TPM's failure is what Open reports.
func FuzzOpen(f *testing.F) {
	f.Add(fuzzKeyFile(f, true, false))
	f.Add(fuzzKeyFile(f, false, false))
	f.Add(fuzzKeyFile(f, true, true))
	f.Add([]byte("-----BEGIN TSS2 PRIVATE KEY-----\nMAA=\n-----END TSS2 PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tpm := &deadTPM{}
		k, err := Open(data, tpm, &Options{UserAuth: []byte("auth")})
		if err == nil {
			k.Close()
			t.Fatal("Open succeeded on a TPM that answers nothing")
		}
		// go-tpm-keyfiles wraps the TPM's error with %v, so match its text.
		if tpm.sent > 0 && !strings.Contains(err.Error(), errDeadTPM.Error()) {
			t.Fatalf("reached the TPM, then failed with %v", err)
		}
	})
}
