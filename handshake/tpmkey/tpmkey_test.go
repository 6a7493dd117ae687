package tpmkey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/certs/certstest"
	"github.com/tlshd-go/tlshd-go/handshake/stdtls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// startSWTPM runs a fresh swtpm on a unix socket and returns a transport
// to it (through OpenTPM) that counts commands.
func startSWTPM(t *testing.T) *countingTPM {
	t.Helper()
	swtpm, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("TLSHD_REQUIRE_INTEROP") == "1" {
			t.Fatal("swtpm is not installed and TLSHD_REQUIRE_INTEROP=1")
		}
		t.Skip("swtpm is not installed (Debian package swtpm)")
	}
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tpm.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, swtpm, "socket", "--tpm2",
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+dir)
	out := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting swtpm: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		cancel()
		if t.Failed() {
			t.Logf("swtpm output:\n%s", out.String())
		}
	})
	// The socket appears at bind(), before swtpm listens: retry until
	// it answers.
	deadline := time.Now().Add(10 * time.Second)
	var tpm transport.TPMCloser
	for {
		if tpm, err = OpenTPM(sock); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("swtpm exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm does not answer on %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { tpm.Close() })
	return &countingTPM{TPMCloser: tpm}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// countingTPM counts TPM commands by command code.
type countingTPM struct {
	transport.TPMCloser
	mu     sync.Mutex
	counts map[tpm2.TPMCC]int
}

func (c *countingTPM) Send(cmd []byte) ([]byte, error) {
	if len(cmd) >= 10 {
		cc := tpm2.TPMCC(uint32(cmd[6])<<24 | uint32(cmd[7])<<16 | uint32(cmd[8])<<8 | uint32(cmd[9]))
		c.mu.Lock()
		if c.counts == nil {
			c.counts = make(map[tpm2.TPMCC]int)
		}
		c.counts[cc]++
		c.mu.Unlock()
	}
	return c.TPMCloser.Send(cmd)
}

func (c *countingTPM) reset() map[tpm2.TPMCC]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.counts
	c.counts = nil
	return m
}

func transientHandles(t *testing.T, tpm transport.TPM) int {
	t.Helper()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTTransient) << 24,
		PropertyCount: 64,
	}.Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	return len(h.Handle)
}

func createKey(t *testing.T, tpm transport.TPMCloser, alg Algorithm, o *Options) []byte {
	t.Helper()
	start := time.Now()
	pemBytes, err := Create(tpm, alg, "tlshd-go test", o)
	if err != nil {
		t.Fatalf("creating a TPM key: %v", err)
	}
	t.Logf("created key %d in %v", alg, time.Since(start).Round(time.Millisecond))
	return pemBytes
}

func openKey(t *testing.T, pemBytes []byte, tpm transport.TPMCloser, o *Options) *Key {
	t.Helper()
	k, err := Open(pemBytes, tpm, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestECDSA(t *testing.T) {
	tpm := startSWTPM(t)
	pemBytes := createKey(t, tpm, ECDSAP256, nil)
	before := transientHandles(t, tpm)

	tpm.reset()
	k := openKey(t, pemBytes, tpm, nil)
	t.Logf("Open: %v", tpm.reset())
	if n := transientHandles(t, tpm); n != before+1 {
		t.Errorf("%d transient objects after Open, want %d (key loaded, parent flushed)", n, before+1)
	}
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("public key %T", k.Public())
	}
	for i := range 3 {
		d := sha256.Sum256([]byte{byte(i)})
		sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(pub, d[:], sig) {
			t.Fatal("signature does not verify")
		}
	}
	// Each signature is one TPM2_Sign: the key is not reloaded, nor its
	// parent recreated.
	if c := tpm.reset(); c[tpm2.TPMCCSign] != 3 || len(c) != 2 /* Sign, GetCapability */ {
		t.Errorf("commands for 3 signatures: %v", c)
	}

	// Concurrent signers share the transport.
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := sha256.Sum256([]byte{byte(i), 1})
			sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
			if err != nil || !ecdsa.VerifyASN1(pub, d[:], sig) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d concurrent signatures failed", bad.Load())
	}

	if _, err := k.Sign(rand.Reader, make([]byte, 20), crypto.SHA256); err == nil {
		t.Error("wrong digest length accepted")
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if n := transientHandles(t, tpm); n != before {
		t.Errorf("%d transient objects after Close, want %d", n, before)
	}
	if _, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestUserAuth(t *testing.T) {
	tpm := startSWTPM(t)
	pemBytes := createKey(t, tpm, ECDSAP256, &Options{UserAuth: []byte("1234")})
	if _, err := Open(pemBytes, tpm, nil); !errors.Is(err, ErrAuthRequired) {
		t.Fatalf("Open without the password: %v", err)
	}
	d := sha256.Sum256([]byte("x"))
	wrong := openKey(t, pemBytes, tpm, &Options{UserAuth: []byte("4321")})
	if _, err := wrong.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
		t.Fatal("signed with the wrong password")
	}
	wrong.Close()
	k := openKey(t, pemBytes, tpm, &Options{UserAuth: []byte("1234")})
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatalf("sign with the password: %v", err)
	}
}

func TestRSA(t *testing.T) {
	tpm := startSWTPM(t)
	pemBytes := createKey(t, tpm, RSA2048, nil)
	k := openKey(t, pemBytes, tpm, nil)
	pub := k.Public().(*rsa.PublicKey)
	if pub.N.BitLen() != 2048 || !k.decrypt {
		t.Fatalf("%d-bit key, decrypt %v", pub.N.BitLen(), k.decrypt)
	}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		hh := h.New()
		hh.Write([]byte("message"))
		d := hh.Sum(nil)
		sig, err := k.Sign(rand.Reader, d, h)
		if err != nil || rsa.VerifyPKCS1v15(pub, h, d, sig) != nil {
			t.Errorf("%v PKCS #1 v1.5: %v", h, err)
		}
		pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		tpm.reset()
		sig, err = k.Sign(rand.Reader, d, pss)
		if err != nil || rsa.VerifyPSS(pub, h, d, sig, pss) != nil {
			t.Errorf("%v PSS: %v", h, err)
		}
		c := tpm.reset()
		t.Logf("%v RSA-PSS: TPM2_Sign %d, TPM2_RSA_Decrypt %d (salt-length fallback)", h, c[tpm2.TPMCCSign], c[tpm2.TPMCCRSADecrypt])

		// The fallback on its own.
		sig, err = k.signPSSRaw(rand.Reader, pub, h, d, h.Size())
		if err != nil || rsa.VerifyPSS(pub, h, d, sig, pss) != nil {
			t.Errorf("%v PSS through RSA_Decrypt: %v", h, err)
		}
	}
}

func TestEMSAPSS(t *testing.T) {
	// Our encoding, signed with a software key's raw RSA, verifies with
	// crypto/rsa.
	priv := certstest.NewKey(t, certstest.RSA2048).(*rsa.PrivateKey)
	d := sha512.Sum384([]byte("m"))
	em, err := emsaPSSEncode(rand.Reader, crypto.SHA384, d[:], 48, priv.N.BitLen()-1)
	if err != nil {
		t.Fatal(err)
	}
	c := new(big.Int).SetBytes(em)
	sig := c.Exp(c, priv.D, priv.N).FillBytes(make([]byte, priv.Size()))
	if err := rsa.VerifyPSS(&priv.PublicKey, crypto.SHA384, d[:], sig, &rsa.PSSOptions{SaltLength: 48}); err != nil {
		t.Fatal(err)
	}
	if _, err := emsaPSSEncode(rand.Reader, crypto.SHA512, make([]byte, 64), 200, 1023); err == nil {
		t.Error("oversized salt accepted")
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := OpenTPM(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("OpenTPM of a missing path")
	}
	if _, err := OpenTPM(os.DevNull); err == nil {
		t.Error("OpenTPM of a non-TPM device")
	}
	if _, err := Open([]byte("not a key"), nil, nil); err == nil {
		t.Error("Open of junk")
	}
}

// handshake runs a stdtls handshake over loopback TCP.
func handshake(t *testing.T, ccfg, scfg *tls.Config) (c, s *tls13.Session) {
	t.Helper()
	cconn, sconn := testtool.TCPPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type res struct {
		s   *tls13.Session
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := stdtls.Server(ctx, sconn, scfg)
		ch <- res{s, err}
	}()
	c, cerr := stdtls.Client(ctx, cconn, ccfg)
	r := <-ch
	if cerr != nil || r.err != nil {
		t.Fatalf("client: %v; server: %v", cerr, r.err)
	}
	return c, r.s
}

// countingSigner counts the CertificateVerify signatures.
type countingSigner struct {
	crypto.Signer
	n atomic.Int32
}

func (c *countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, d, o)
}

// TestHandshake: real TLS 1.3 handshakes in which the TPM key signs the
// CertificateVerify, as mTLS client and as server, loaded through
// certs.LoadFiles with Opener.
func TestHandshake(t *testing.T) {
	tpm := startSWTPM(t)
	for _, alg := range []Algorithm{ECDSAP256, RSA2048} {
		name := map[Algorithm]string{ECDSAP256: "ECDSA-P256", RSA2048: "RSA-2048"}[alg]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ca := certstest.NewCA(t, certstest.ECDSAP256, "TPM test CA")
			pemBytes := createKey(t, tpm, alg, nil)
			k := openKey(t, pemBytes, tpm, nil)
			leaf := ca.LeafFor(t, k)
			k.Close()
			certFile := certstest.WriteFile(t, dir, "tpm-cert.pem", certstest.CertPEM(leaf.Cert))
			keyFile := certstest.WriteFile(t, dir, "tpm-key.pem", pemBytes)
			cert, err := certs.LoadFiles(certFile, keyFile, Opener(tpm, nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { certs.CloseKey(cert) })
			signer := &countingSigner{Signer: cert.PrivateKey.(crypto.Signer)}
			cert.PrivateKey = signer
			soft := ca.Leaf(t, certstest.ECDSAP256)

			t.Run("client", func(t *testing.T) {
				ccfg, err := certs.ClientConfig(certs.ClientOptions{Certificate: &cert, Roots: ca.Pool(), PeerName: "localhost"})
				if err != nil {
					t.Fatal(err)
				}
				scfg, err := certs.ServerConfig(certs.ServerOptions{Certificates: []tls.Certificate{soft.TLS()},
					ClientAuth: certs.ClientAuthRequired, Roots: ca.Pool()})
				if err != nil {
					t.Fatal(err)
				}
				before := signer.n.Load()
				_, s := handshake(t, ccfg, scfg)
				if len(s.PeerCertificates) != 1 || signer.n.Load() != before+1 {
					t.Fatalf("server saw %d certificates; %d TPM signatures", len(s.PeerCertificates), signer.n.Load()-before)
				}
			})
			t.Run("server", func(t *testing.T) {
				scfg, err := certs.ServerConfig(certs.ServerOptions{Certificates: []tls.Certificate{cert}})
				if err != nil {
					t.Fatal(err)
				}
				ccfg, err := certs.ClientConfig(certs.ClientOptions{Roots: ca.Pool(), PeerName: "localhost"})
				if err != nil {
					t.Fatal(err)
				}
				before := signer.n.Load()
				c, _ := handshake(t, ccfg, scfg)
				if len(c.PeerCertificates) != 1 || signer.n.Load() != before+1 {
					t.Fatalf("client saw %d certificates; %d TPM signatures", len(c.PeerCertificates), signer.n.Load()-before)
				}
			})
		})
	}
}
