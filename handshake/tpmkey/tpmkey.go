// Package tpmkey signs with TPM 2.0-resident keys kept in "TSS2 PRIVATE
// KEY" PEM files (the format of tpm2-openssl, GnuTLS and
// github.com/foxboron/go-tpm-keyfiles), so that an x509 credential's
// private key never leaves the TPM. A *Key is a crypto.Signer for
// tls.Certificate.PrivateKey: crypto/tls calls it for CertificateVerify.
//
// A key is loaded into the TPM once, by Open, and every signature is a
// single TPM2_Sign on the loaded object; the storage parent is flushed
// right after loading. Close flushes the key.
//
// ECDSA keys are the safe choice. RSA keys sign PKCS #1 v1.5 and RSA-PSS;
// TLS 1.3 verifiers require a PSS salt as long as the hash, and some TPMs
// use the longest possible salt, so every RSA-PSS signature is checked,
// and if it does not verify with a hash-length salt and the key may
// decrypt, the PSS encoding is done here and the TPM only performs the
// raw RSA operation.
package tpmkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// DefaultDevice is the kernel's resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// Errors.
var (
	ErrClosed         = errors.New("tpmkey: key closed")
	ErrAuthRequired   = errors.New("tpmkey: the key needs a password (user auth)")
	ErrUnsupportedKey = errors.New("tpmkey: unsupported TPM key")
)

// OpenTPM opens a TPM: path is a TPM character device (empty means
// DefaultDevice) or the unix socket of a TPM simulator such as swtpm. It
// checks that a TPM answers. The transport serialises commands, so keys
// sharing it may sign concurrently.
func OpenTPM(path string) (transport.TPMCloser, error) {
	if path == "" {
		path = DefaultDevice
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: %w", err)
	}
	var t transport.TPMCloser
	if fi.Mode()&os.ModeSocket != 0 {
		t, err = linuxudstpm.Open(path)
	} else {
		t, err = linuxtpm.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("tpmkey: opening %s: %w", path, err)
	}
	// Check that a TPM answers.
	if _, err := (tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTManufacturer),
		PropertyCount: 1,
	}).Execute(t); err != nil {
		t.Close()
		return nil, fmt.Errorf("tpmkey: %s does not answer as a TPM 2.0: %w", path, err)
	}
	return &lockedTPM{t: t}, nil
}

// lockedTPM serialises commands on a transport.
type lockedTPM struct {
	mu sync.Mutex
	t  transport.TPMCloser
}

func (l *lockedTPM) Send(cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.Send(cmd)
}

func (l *lockedTPM) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.Close()
}

// Options are the authorisation values a key may need.
type Options struct {
	// OwnerAuth authorises the storage hierarchy the parent key lives in;
	// usually empty.
	OwnerAuth []byte
	// UserAuth is the key's own password, for keys that have one
	// (emptyAuth false in the key file); ignored for keys without.
	UserAuth []byte
}

// A Key is a TPM-resident private key loaded for signing. It implements
// crypto.Signer and io.Closer and is safe for concurrent use.
type Key struct {
	tpm     transport.TPMCloser
	pub     crypto.PublicKey
	keySize int  // RSA modulus size in bytes
	decrypt bool // the TPM allows raw RSA decryption with the key

	mu     sync.Mutex
	handle *tpm2.AuthHandle // nil once closed
}

// Open parses a TSS2 PRIVATE KEY PEM file and loads the key into tpm. The
// key stays loaded (a transient object) until Close; tpm must stay open
// as long.
func Open(pemBytes []byte, tpm transport.TPMCloser, o *Options) (*Key, error) {
	if o == nil {
		o = &Options{}
	}
	kf, err := keyfile.Decode(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: %w", err)
	}
	if !kf.Keytype.Equal(keyfile.OIDLoadableKey) && !kf.Keytype.Equal(keyfile.OIDImportableKey) {
		return nil, fmt.Errorf("%w: key type %v is not a loadable or importable key", ErrUnsupportedKey, kf.Keytype)
	}
	if len(kf.Policy) > 0 || len(kf.AuthPolicy) > 0 {
		return nil, fmt.Errorf("%w: keys with authorisation policies are not supported", ErrUnsupportedKey)
	}
	pubArea, err := kf.Pubkey.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpmkey: public area: %w", err)
	}
	if !pubArea.ObjectAttributes.SignEncrypt {
		return nil, fmt.Errorf("%w: the key cannot sign", ErrUnsupportedKey)
	}
	if kf.HasAuth() && len(o.UserAuth) == 0 {
		return nil, ErrAuthRequired
	}
	pub, err := kf.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("tpmkey: public key: %w", err)
	}
	k := &Key{tpm: tpm, pub: pub}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
	case *rsa.PublicKey:
		k.keySize = p.Size()
		k.decrypt = pubArea.ObjectAttributes.Decrypt
	default:
		return nil, fmt.Errorf("%w: public key %T", ErrUnsupportedKey, pub)
	}

	sess := keyfile.NewTPMSession(tpm)
	handle, parent, err := keyfile.LoadKey(sess, kf, o.OwnerAuth)
	if parent != nil && keyfile.IsMSO(parent.Handle, keyfile.TPM_HT_TRANSIENT) {
		// A primary created for the load; the loaded key does not
		// need it any more.
		keyfile.FlushHandle(tpm, parent)
	}
	if err != nil {
		return nil, fmt.Errorf("tpmkey: loading the key: %w", err)
	}
	if kf.HasAuth() {
		handle.Auth = tpm2.PasswordAuth(o.UserAuth)
	}
	k.handle = handle
	return k, nil
}

// Opener returns a function that opens TSS2 keys on tpm, of the shape
// certs.KeyOpener has.
func Opener(tpm transport.TPMCloser, o *Options) func(pemBytes []byte) (crypto.Signer, error) {
	return func(pemBytes []byte) (crypto.Signer, error) {
		return Open(pemBytes, tpm, o)
	}
}

// Public returns the public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Close flushes the key from the TPM. It does not close the TPM.
func (k *Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.handle == nil {
		return nil
	}
	_, err := tpm2.FlushContext{FlushHandle: k.handle.Handle}.Execute(k.tpm)
	k.handle = nil
	if err != nil {
		return fmt.Errorf("tpmkey: flushing the key: %w", err)
	}
	return nil
}

var digestAlgs = map[crypto.Hash]tpm2.TPMAlgID{
	crypto.SHA256: tpm2.TPMAlgSHA256,
	crypto.SHA384: tpm2.TPMAlgSHA384,
	crypto.SHA512: tpm2.TPMAlgSHA512,
}

// Sign signs digest, a hash made with opts.HashFunc(): ECDSA (ASN.1
// signature), RSA PKCS #1 v1.5, or RSA-PSS if opts is *rsa.PSSOptions.
func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	alg, ok := digestAlgs[h]
	if !ok {
		return nil, fmt.Errorf("tpmkey: unsupported hash %v", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("tpmkey: %d-byte digest for %v", len(digest), h)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.handle == nil {
		return nil, ErrClosed
	}
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		return k.tpmSign(digest, alg, tpm2.TPMAlgECC)
	case *rsa.PublicKey:
		pss, ok := opts.(*rsa.PSSOptions)
		if !ok {
			return k.tpmSign(digest, alg, tpm2.TPMAlgRSA)
		}
		saltLen := pss.SaltLength
		if saltLen == rsa.PSSSaltLengthEqualsHash || saltLen == rsa.PSSSaltLengthAuto {
			saltLen = h.Size()
		}
		if saltLen == h.Size() {
			sig, err := k.tpmSign(digest, alg, tpm2.TPMAlgRSAPSS)
			if err == nil && rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: saltLen}) == nil {
				return sig, nil
			}
			if !k.decrypt {
				if err == nil {
					err = errors.New("the TPM's RSA-PSS salt is not the hash length, and the key cannot decrypt")
				}
				return nil, fmt.Errorf("tpmkey: RSA-PSS: %w", err)
			}
		} else if !k.decrypt {
			return nil, fmt.Errorf("tpmkey: RSA-PSS with a %d-byte salt needs a key that can decrypt", saltLen)
		}
		return k.signPSSRaw(rand, pub, h, digest, saltLen)
	}
	return nil, ErrUnsupportedKey
}

func (k *Key) tpmSign(digest []byte, digestAlg, sigAlg tpm2.TPMAlgID) ([]byte, error) {
	rsp, err := keyfile.TPMSign(k.tpm, *k.handle, digest, digestAlg, k.keySize, sigAlg)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: %w", err)
	}
	sig, err := keyfile.EncodeSignatureASN1(rsp)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: %w", err)
	}
	return sig, nil
}

// signPSSRaw encodes the RSA-PSS message here and has the TPM apply the
// private key to it (RSA_Decrypt without padding).
func (k *Key) signPSSRaw(rand io.Reader, pub *rsa.PublicKey, h crypto.Hash, digest []byte, saltLen int) ([]byte, error) {
	em, err := emsaPSSEncode(rand, h, digest, saltLen, pub.N.BitLen()-1)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: RSA-PSS: %w", err)
	}
	in := make([]byte, k.keySize)
	copy(in[len(in)-len(em):], em)
	rsp, err := tpm2.RSADecrypt{
		KeyHandle:  *k.handle,
		CipherText: tpm2.TPM2BPublicKeyRSA{Buffer: in},
		InScheme:   tpm2.TPMTRSADecrypt{Scheme: tpm2.TPMAlgNull},
	}.Execute(k.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: RSA-PSS via RSA_Decrypt: %w", err)
	}
	sig := make([]byte, k.keySize)
	m := bytes.TrimLeft(rsp.Message.Buffer, "\x00")
	if len(m) > len(sig) {
		return nil, errors.New("tpmkey: RSA_Decrypt returned too much")
	}
	copy(sig[len(sig)-len(m):], m)
	if err := rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: saltLen}); err != nil {
		return nil, fmt.Errorf("tpmkey: RSA-PSS via RSA_Decrypt does not verify: %w", err)
	}
	return sig, nil
}

// emsaPSSEncode is EMSA-PSS-ENCODE (RFC 8017, 9.1.1) for an already
// hashed message, with MGF1 over the same hash.
func emsaPSSEncode(rand io.Reader, h crypto.Hash, mHash []byte, sLen, emBits int) ([]byte, error) {
	hLen := h.Size()
	emLen := (emBits + 7) / 8
	if len(mHash) != hLen || sLen < 0 || emLen < hLen+sLen+2 {
		return nil, errors.New("encoding error")
	}
	salt := make([]byte, sLen)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(make([]byte, 8))
	hh.Write(mHash)
	hh.Write(salt)
	H := hh.Sum(nil)

	em := make([]byte, emLen)
	db := em[:emLen-hLen-1]
	db[emLen-sLen-hLen-2] = 0x01
	copy(db[emLen-sLen-hLen-1:], salt)
	mgf1XOR(db, h, H)
	db[0] &= 0xff >> (8*emLen - emBits)
	copy(em[emLen-hLen-1:], H)
	em[emLen-1] = 0xbc
	return em, nil
}

// mgf1XOR XORs out with MGF1(seed) (RFC 8017, B.2.1).
func mgf1XOR(out []byte, h crypto.Hash, seed []byte) {
	var counter [4]byte
	for done := 0; done < len(out); {
		hh := h.New()
		hh.Write(seed)
		hh.Write(counter[:])
		block := hh.Sum(nil)
		for i := 0; i < len(block) && done < len(out); i++ {
			out[done] ^= block[i]
			done++
		}
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
}

// An Algorithm is a key type Create can make.
type Algorithm int

// Key types. ECDSA P-256 is the recommended one (see the package comment
// on RSA-PSS).
const (
	ECDSAP256 Algorithm = iota
	ECDSAP384
	RSA2048
)

// Create makes a new signing key in tpm, under the storage hierarchy's
// standard ECC primary key, and returns it as TSS2 PRIVATE KEY PEM. With
// o.UserAuth the key gets that password.
func Create(tpm transport.TPMCloser, alg Algorithm, description string, o *Options) ([]byte, error) {
	if o == nil {
		o = &Options{}
	}
	var (
		ta   tpm2.TPMAlgID
		bits int
	)
	switch alg {
	case ECDSAP256:
		ta, bits = tpm2.TPMAlgECC, 256
	case ECDSAP384:
		ta, bits = tpm2.TPMAlgECC, 384
	case RSA2048:
		ta, bits = tpm2.TPMAlgRSA, 2048
	default:
		return nil, fmt.Errorf("%w: algorithm %d", ErrUnsupportedKey, alg)
	}
	kf, err := keyfile.NewLoadableKey(tpm, ta, bits, o.OwnerAuth,
		keyfile.WithUserAuth(o.UserAuth), keyfile.WithDescription(description))
	if err != nil {
		return nil, fmt.Errorf("tpmkey: creating the key: %w", err)
	}
	var b bytes.Buffer
	if err := keyfile.Encode(&b, kf); err != nil {
		return nil, fmt.Errorf("tpmkey: %w", err)
	}
	return b.Bytes(), nil
}
