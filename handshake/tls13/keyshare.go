package tls13

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/hex"
	"errors"
	"io"
	"sync"

	"filippo.io/bigmod"
)

// A clientKey is the client's ephemeral secret for one offered group.
type clientKey interface {
	// finish combines it with the server's key_share into the shared
	// secret, or fails with an illegal_parameter alert.
	finish(serverShare []byte) ([]byte, error)
}

// newClientKey makes an ephemeral key for g and the key_share to send.
func newClientKey(g Group, rand io.Reader) (clientKey, []byte, error) {
	switch g {
	case X25519, P256, P384:
		priv, err := curve(g).GenerateKey(rand)
		if err != nil {
			return nil, nil, err
		}
		return ecdhKey{priv}, priv.PublicKey().Bytes(), nil
	case X25519MLKEM768:
		dk, err := mlkem.GenerateKey768()
		if err != nil {
			return nil, nil, err
		}
		x, err := ecdh.X25519().GenerateKey(rand)
		if err != nil {
			return nil, nil, err
		}
		share := append(dk.EncapsulationKey().Bytes(), x.PublicKey().Bytes()...)
		return hybridKey{dk, x}, share, nil
	case SecP256r1MLKEM768, SecP384r1MLKEM1024:
		return newECDHMLKEMKey(g, rand)
	case FFDHE2048, FFDHE3072:
		return newFFDHEKey(ffdhe(g), rand)
	}
	return nil, nil, errors.New("tls13: unsupported group " + g.String())
}

// serverKeyExchange answers the client's key_share for g with the
// server's share and the shared secret.
func serverKeyExchange(g Group, clientShare []byte, rand io.Reader) (share, shared []byte, err error) {
	switch g {
	case X25519, P256, P384:
		c := curve(g)
		peer, err := c.NewPublicKey(clientShare)
		if err != nil {
			return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share", g)
		}
		priv, err := c.GenerateKey(rand)
		if err != nil {
			return nil, nil, err
		}
		shared, err := priv.ECDH(peer)
		if err != nil {
			return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share: %v", g, err)
		}
		return priv.PublicKey().Bytes(), shared, nil
	case X25519MLKEM768:
		if len(clientShare) != mlkem.EncapsulationKeySize768+32 {
			return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share length %d", g, len(clientShare))
		}
		ek, err := mlkem.NewEncapsulationKey768(clientShare[:mlkem.EncapsulationKeySize768])
		if err != nil {
			return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share", g)
		}
		peer, err := ecdh.X25519().NewPublicKey(clientShare[mlkem.EncapsulationKeySize768:])
		if err != nil {
			return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share", g)
		}
		x, err := ecdh.X25519().GenerateKey(rand)
		if err != nil {
			return nil, nil, err
		}
		xShared, err := x.ECDH(peer)
		if err != nil {
			return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share: %v", g, err)
		}
		kemShared, ct := ek.Encapsulate()
		// draft-ietf-tls-ecdhe-mlkem: ML-KEM first, for both the share
		// and the secret.
		shared = append(kemShared, xShared...)
		clear(xShared)
		return append(ct, x.PublicKey().Bytes()...), shared, nil
	case SecP256r1MLKEM768, SecP384r1MLKEM1024:
		return ecdhMLKEMServer(g, clientShare, rand)
	case FFDHE2048, FFDHE3072:
		k, share, err := newFFDHEKey(ffdhe(g), rand)
		if err != nil {
			return nil, nil, err
		}
		shared, err := k.finish(clientShare)
		return share, shared, err
	}
	return nil, nil, errors.New("tls13: unsupported group " + g.String())
}

func curve(g Group) ecdh.Curve {
	switch g {
	case P256:
		return ecdh.P256()
	case P384:
		return ecdh.P384()
	}
	return ecdh.X25519()
}

type ecdhKey struct{ priv *ecdh.PrivateKey }

func (k ecdhKey) finish(peerShare []byte) ([]byte, error) {
	peer, err := k.priv.Curve().NewPublicKey(peerShare)
	if err != nil {
		return nil, alertf(AlertIllegalParameter, "invalid server key share")
	}
	shared, err := k.priv.ECDH(peer)
	if err != nil {
		return nil, alertf(AlertIllegalParameter, "invalid server key share: %v", err)
	}
	return shared, nil
}

type hybridKey struct {
	dk *mlkem.DecapsulationKey768
	x  *ecdh.PrivateKey
}

func (k hybridKey) finish(peerShare []byte) ([]byte, error) {
	if len(peerShare) != mlkem.CiphertextSize768+32 {
		return nil, alertf(AlertIllegalParameter, "invalid X25519MLKEM768 server share length %d", len(peerShare))
	}
	kemShared, err := k.dk.Decapsulate(peerShare[:mlkem.CiphertextSize768])
	if err != nil {
		return nil, alertf(AlertIllegalParameter, "invalid X25519MLKEM768 ciphertext")
	}
	peer, err := ecdh.X25519().NewPublicKey(peerShare[mlkem.CiphertextSize768:])
	if err != nil {
		return nil, alertf(AlertIllegalParameter, "invalid X25519MLKEM768 server share")
	}
	xShared, err := k.x.ECDH(peer)
	if err != nil {
		return nil, alertf(AlertIllegalParameter, "invalid X25519MLKEM768 server share: %v", err)
	}
	shared := append(kemShared, xShared...)
	clear(xShared)
	return shared, nil
}

// Finite-field Diffie-Hellman (RFC 7919) in constant time: bigmod's Exp
// does not branch on or index memory by exponent bits, unlike math/big.
type ffdheParams struct {
	group Group
	p     *bigmod.Modulus
	g     *bigmod.Nat
	size  int // bytes of p, the fixed length of shares and secrets
	// expLen is the private exponent length in bytes. The primes are
	// safe primes, so short exponents are sound (RFC 7919, 5.2 asks
	// 225 and 275 bits for these groups; we use 256 and 384).
	expLen int
}

var (
	ffdhe2048Params = sync.OnceValue(func() *ffdheParams { return newFFDHEParams(FFDHE2048, ffdhe2048P, 32) })
	ffdhe3072Params = sync.OnceValue(func() *ffdheParams { return newFFDHEParams(FFDHE3072, ffdhe3072P, 48) })
)

func ffdhe(g Group) *ffdheParams {
	if g == FFDHE2048 {
		return ffdhe2048Params()
	}
	return ffdhe3072Params()
}

func newFFDHEParams(g Group, pHex string, expLen int) *ffdheParams {
	pb, err := hex.DecodeString(pHex)
	if err != nil {
		panic(err)
	}
	p, err := bigmod.NewModulus(pb)
	if err != nil {
		panic(err)
	}
	gen, err := bigmod.NewNat().SetBytes([]byte{2}, p)
	if err != nil {
		panic(err)
	}
	return &ffdheParams{group: g, p: p, g: gen, size: len(pb), expLen: expLen}
}

type ffdheKey struct {
	params *ffdheParams
	x      []byte // private exponent, big-endian
}

func newFFDHEKey(params *ffdheParams, rand io.Reader) (*ffdheKey, []byte, error) {
	x := make([]byte, params.expLen)
	if _, err := io.ReadFull(rand, x); err != nil {
		return nil, nil, err
	}
	// Keep the exponent at its full length so every key costs the same
	// and none is degenerate.
	x[0] |= 0x80
	y := bigmod.NewNat().Exp(params.g, x, params.p)
	return &ffdheKey{params: params, x: x}, y.Bytes(params.p), nil
}

func (k *ffdheKey) finish(peerShare []byte) ([]byte, error) {
	defer clear(k.x)
	p := k.params
	// RFC 8446, 4.2.8.1: shares are left-padded to the size of p, and the
	// peer's value must satisfy 1 < Y < p-1 (RFC 7919, 5.1).
	if len(peerShare) != p.size {
		return nil, alertf(AlertIllegalParameter, "%v key share has %d bytes, want %d", p.group, len(peerShare), p.size)
	}
	y, err := bigmod.NewNat().SetBytes(peerShare, p.p)
	if err != nil || y.IsZero() == 1 || y.IsOne() == 1 || y.IsMinusOne(p.p) == 1 {
		return nil, alertf(AlertIllegalParameter, "invalid %v key share", p.group)
	}
	z := bigmod.NewNat().Exp(y, k.x, p.p)
	return z.Bytes(p.p), nil
}
