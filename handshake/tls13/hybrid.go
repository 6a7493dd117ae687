package tls13

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"io"
)

// The NIST-curve hybrids of draft-ietf-tls-ecdhe-mlkem (section 4.2). Unlike
// X25519MLKEM768, whose share and secret put ML-KEM first, these put the
// ECDH part first: the client's share is the uncompressed point then the
// ML-KEM encapsulation key, the server's the point then the ciphertext,
// and the shared secret the ECDH secret then the ML-KEM one. OpenSSL 3.5
// and Go's crypto/tls (1.26) order them the same way.
//
// None of the hybrids is in DefaultGroups. With an external PSK the
// (EC)DHE of psk_dhe_ke adds only forward secrecy: the PSK itself is a
// symmetric key that a quantum computer does not break, so recorded
// traffic stays safe unless the PSK also leaks. The hybrids cost 2x
// (X25519MLKEM768) to 8x (SecP384r1MLKEM1024) an X25519 handshake and
// 1.2 to 1.6 KB more per flight, and NVMe targets may not implement them;
// a policy lists them where forward secrecy against a future quantum
// attacker matters.
const (
	SecP256r1MLKEM768  Group = 0x11eb
	SecP384r1MLKEM1024 Group = 0x11ed
)

// A kemDecapsulator is a client's ML-KEM key of either size.
type kemDecapsulator interface {
	Decapsulate(ciphertext []byte) ([]byte, error)
}

// ecdhMLKEM describes one ECDH-first hybrid.
type ecdhMLKEM struct {
	curve       ecdh.Curve
	pointSize   int // uncompressed point
	ekSize      int
	ctSize      int
	generate    func() (kemDecapsulator, []byte, error)
	encapsulate func(ek []byte) (shared, ct []byte, err error)
}

func ecdhMLKEMParams(g Group) ecdhMLKEM {
	if g == SecP384r1MLKEM1024 {
		return ecdhMLKEM{
			curve: ecdh.P384(), pointSize: 97,
			ekSize: mlkem.EncapsulationKeySize1024, ctSize: mlkem.CiphertextSize1024,
			generate: func() (kemDecapsulator, []byte, error) {
				dk, err := mlkem.GenerateKey1024()
				if err != nil {
					return nil, nil, err
				}
				return dk, dk.EncapsulationKey().Bytes(), nil
			},
			encapsulate: func(b []byte) ([]byte, []byte, error) {
				ek, err := mlkem.NewEncapsulationKey1024(b)
				if err != nil {
					return nil, nil, err
				}
				shared, ct := ek.Encapsulate()
				return shared, ct, nil
			},
		}
	}
	return ecdhMLKEM{
		curve: ecdh.P256(), pointSize: 65,
		ekSize: mlkem.EncapsulationKeySize768, ctSize: mlkem.CiphertextSize768,
		generate: func() (kemDecapsulator, []byte, error) {
			dk, err := mlkem.GenerateKey768()
			if err != nil {
				return nil, nil, err
			}
			return dk, dk.EncapsulationKey().Bytes(), nil
		},
		encapsulate: func(b []byte) ([]byte, []byte, error) {
			ek, err := mlkem.NewEncapsulationKey768(b)
			if err != nil {
				return nil, nil, err
			}
			shared, ct := ek.Encapsulate()
			return shared, ct, nil
		},
	}
}

type ecdhMLKEMKey struct {
	group Group
	p     ecdhMLKEM
	dk    kemDecapsulator
	x     *ecdh.PrivateKey
}

func newECDHMLKEMKey(g Group, rand io.Reader) (clientKey, []byte, error) {
	p := ecdhMLKEMParams(g)
	dk, ek, err := p.generate()
	if err != nil {
		return nil, nil, err
	}
	x, err := p.curve.GenerateKey(rand)
	if err != nil {
		return nil, nil, err
	}
	share := append(x.PublicKey().Bytes(), ek...)
	return &ecdhMLKEMKey{g, p, dk, x}, share, nil
}

func (k *ecdhMLKEMKey) finish(peerShare []byte) ([]byte, error) {
	if len(peerShare) != k.p.pointSize+k.p.ctSize {
		return nil, alertf(AlertIllegalParameter, "invalid %v server share length %d", k.group, len(peerShare))
	}
	peer, err := k.p.curve.NewPublicKey(peerShare[:k.p.pointSize])
	if err != nil {
		return nil, alertf(AlertIllegalParameter, "invalid %v server share", k.group)
	}
	xShared, err := k.x.ECDH(peer)
	if err != nil {
		return nil, alertf(AlertIllegalParameter, "invalid %v server share: %v", k.group, err)
	}
	kemShared, err := k.dk.Decapsulate(peerShare[k.p.pointSize:])
	if err != nil {
		clear(xShared)
		return nil, alertf(AlertIllegalParameter, "invalid %v ciphertext", k.group)
	}
	shared := append(xShared, kemShared...)
	clear(kemShared)
	return shared, nil
}

// ecdhMLKEMServer answers a client's share for an ECDH-first hybrid.
func ecdhMLKEMServer(g Group, clientShare []byte, rand io.Reader) (share, shared []byte, err error) {
	p := ecdhMLKEMParams(g)
	if len(clientShare) != p.pointSize+p.ekSize {
		return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share length %d", g, len(clientShare))
	}
	peer, err := p.curve.NewPublicKey(clientShare[:p.pointSize])
	if err != nil {
		return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share", g)
	}
	kemShared, ct, err := p.encapsulate(clientShare[p.pointSize:])
	if err != nil {
		return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share", g)
	}
	x, err := p.curve.GenerateKey(rand)
	if err != nil {
		clear(kemShared)
		return nil, nil, err
	}
	xShared, err := x.ECDH(peer)
	if err != nil {
		clear(kemShared)
		return nil, nil, alertf(AlertIllegalParameter, "invalid %v key share: %v", g, err)
	}
	shared = append(xShared, kemShared...)
	clear(kemShared)
	return append(x.PublicKey().Bytes(), ct...), shared, nil
}
