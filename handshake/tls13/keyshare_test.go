package tls13

import (
	"bytes"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"testing"
)

// TestFFDHEPrimes re-derives the RFC 7919 primes from their definition,
// p = 2^b - 2^(b-64) + (floor(2^(b-130) * e) + X) * 2^64 - 1, and checks
// that p and (p-1)/2 are prime.
func TestFFDHEPrimes(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		bits uint
		x    int64
	}{
		{"ffdhe2048", ffdhe2048P, 2048, 560316},
		{"ffdhe3072", ffdhe3072P, 3072, 2625351},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// e with 64 guard bits: sum of 2^(b-130+64) / k!.
			scale := new(big.Int).Lsh(big.NewInt(1), tc.bits-130+64)
			e, fact := new(big.Int), big.NewInt(1)
			for k := int64(1); ; k++ {
				term := new(big.Int).Quo(scale, fact)
				if term.Sign() == 0 {
					break
				}
				e.Add(e, term)
				fact.Mul(fact, big.NewInt(k))
			}
			e.Rsh(e, 64)
			p := new(big.Int).Lsh(big.NewInt(1), tc.bits)
			p.Sub(p, new(big.Int).Lsh(big.NewInt(1), tc.bits-64))
			p.Add(p, new(big.Int).Lsh(e.Add(e, big.NewInt(tc.x)), 64))
			p.Sub(p, big.NewInt(1))
			want, _ := new(big.Int).SetString(tc.hex, 16)
			if p.Cmp(want) != 0 {
				t.Fatalf("formula gives %x", p)
			}
			q := new(big.Int).Rsh(p, 1)
			if !p.ProbablyPrime(20) || !q.ProbablyPrime(20) {
				t.Fatal("not a safe prime")
			}
		})
	}
}

func TestKeyAgreement(t *testing.T) {
	for _, g := range []Group{X25519, P256, P384, FFDHE2048, FFDHE3072, X25519MLKEM768} {
		t.Run(g.String(), func(t *testing.T) {
			ck, cshare, err := newClientKey(g, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			sshare, sshared, err := serverKeyExchange(g, cshare, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			cshared, err := ck.finish(sshare)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cshared, sshared) || len(cshared) == 0 {
				t.Fatalf("shared secrets differ: %x %x", cshared, sshared)
			}
			if g == FFDHE2048 || g == FFDHE3072 {
				if len(cshare) != ffdhe(g).size || len(sshare) != ffdhe(g).size || len(cshared) != ffdhe(g).size {
					t.Errorf("shares and secret must be padded to the size of p")
				}
			}
		})
	}
}

func TestInvalidKeyShares(t *testing.T) {
	p3072, _ := hex.DecodeString(ffdhe3072P)
	pMinus1 := bytes.Clone(p3072)
	pMinus1[len(pMinus1)-1]--
	one := make([]byte, len(p3072))
	one[len(one)-1] = 1
	cases := []struct {
		name  string
		group Group
		share []byte
	}{
		{"x25519 low order", X25519, make([]byte, 32)},
		{"x25519 short", X25519, make([]byte, 31)},
		{"p256 not on curve", P256, append([]byte{4}, make([]byte, 64)...)},
		{"p384 compressed", P384, append([]byte{2}, make([]byte, 48)...)},
		{"ffdhe zero", FFDHE3072, make([]byte, len(p3072))},
		{"ffdhe one", FFDHE3072, one},
		{"ffdhe p-1", FFDHE3072, pMinus1},
		{"ffdhe p", FFDHE3072, p3072},
		{"ffdhe short", FFDHE3072, p3072[1:]},
		{"mlkem short", X25519MLKEM768, make([]byte, mlkem.EncapsulationKeySize768)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := serverKeyExchange(tc.group, tc.share, rand.Reader)
			wantAlert(t, err, AlertIllegalParameter, false)
			ck, _, err := newClientKey(tc.group, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			share := tc.share
			if tc.group == X25519MLKEM768 {
				share = make([]byte, mlkem.CiphertextSize768+31)
			}
			_, err = ck.finish(share)
			wantAlert(t, err, AlertIllegalParameter, false)
		})
	}
}
