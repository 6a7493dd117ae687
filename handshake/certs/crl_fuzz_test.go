package certs

import (
	"crypto/x509"
	"errors"
	"testing"

	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
)

// FuzzParseCRLs: CRL files (PEM or DER, one or several) are parsed
// without panicking, and a set built from whatever parses can be asked
// about a real chain: it either finds the chain's leaf revoked, with the
// leaf's serial, or not.
func FuzzParseCRLs(f *testing.F) {
	ca := certstest.NewCA(f, certstest.ECDSAP256, "fuzz CA")
	leaf := ca.Leaf(f, certstest.ECDSAP256)
	revoking := ca.CRL(f, leaf.Cert)
	empty := ca.CRL(f)
	f.Add(revoking)
	f.Add(certstest.CRLPEM(revoking))
	f.Add(append(append([]byte{}, empty...), revoking...))
	f.Add(append(certstest.CRLPEM(empty), certstest.CRLPEM(revoking)...))
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	chain := [][]*x509.Certificate{{leaf.Cert, ca.Cert}}
	f.Fuzz(func(t *testing.T, data []byte) {
		lists, err := ParseCRLs(data)
		if err != nil {
			return
		}
		if len(lists) == 0 {
			t.Fatal("ParseCRLs returned no CRL and no error")
		}
		set := NewCRLSet(lists...)
		err = set.Check(chain)
		var re *RevokedError
		switch {
		case err == nil:
		case errors.As(err, &re) && errors.Is(err, ErrRevoked):
			if re.Serial.Cmp(leaf.Cert.SerialNumber) != 0 {
				t.Fatalf("revoked serial %v, want the leaf's %v", re.Serial, leaf.Cert.SerialNumber)
			}
		default:
			t.Fatalf("Check: %v", err)
		}
	})
}
