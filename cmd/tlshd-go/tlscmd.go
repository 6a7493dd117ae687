package main

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"

	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/handshake/tpmkey"
)

// tlsCommand is what connect and serve share: flags for both
// authentication modes, parsing, and error reporting.
type tlsCommand struct {
	name   string
	fs     *flag.FlagSet
	stderr io.Writer
	tf     tlsFlags
	cert   certs.Flags
	tpm    string
	x509   bool
	// After the handshake: kernel TLS, and key updates every so many
	// bytes written.
	ktls        bool
	updateEvery int
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return fmt.Sprint(*s) }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func newTLSCommand(name, operand string, stderr io.Writer) *tlsCommand {
	c := &tlsCommand{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), stderr: stderr}
	c.fs.SetOutput(stderr)
	c.tf.register(c.fs)
	c.fs.BoolVar(&c.x509, "x509", false, "certificate mode (implied by --cert or --ca); the PSK flags do not apply")
	c.fs.StringVar(&c.cert.CertFile, "cert", "", "x509: our certificate chain (PEM, leaf first)")
	c.fs.StringVar(&c.cert.KeyFile, "key", "", "x509: our private key (PEM, or a TPM key in TSS2 PEM form); default: in --cert")
	c.fs.StringVar(&c.cert.CAFile, "ca", "", "x509: trust anchors (PEM file or directory); default: the system store")
	c.fs.Var((*stringsFlag)(&c.cert.CRLFiles), "crl", "x509: a CRL file (PEM or DER); repeatable")
	c.fs.Var((*stringsFlag)(&c.cert.AllowedNames), "allowed-name", "x509: accept only peers with this name (DNS, IP/CIDR, URI, email); repeatable")
	c.fs.StringVar(&c.tpm, "tpm", "/dev/tpmrm0", "x509: the TPM for TSS2 private keys (device or unix socket)")
	c.fs.BoolVar(&c.ktls, "ktls", false, "after the handshake, hand the connection to kernel TLS as the daemon does (needs the tls module)")
	c.fs.IntVar(&c.updateEvery, "key-update-bytes", 0, "send a TLS KeyUpdate after every N bytes written (with --ktls: through the kernel, Linux 6.14+)")
	c.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tlshd-go %s [flags] %s\n", name, operand)
		c.fs.PrintDefaults()
	}
	return c
}

// parse returns the operand, or an exit status (2) for a usage error.
func (c *tlsCommand) parse(args []string) (string, int) {
	if err := c.fs.Parse(args); err != nil {
		return "", 2
	}
	if c.fs.NArg() != 1 {
		c.fs.Usage()
		return "", 2
	}
	if c.cert.CertFile != "" || c.cert.CAFile != "" {
		c.x509 = true
	}
	if c.x509 {
		// Used only if the key file holds a TPM key.
		c.cert.KeyOpener = func(pem []byte) (crypto.Signer, error) {
			tpm, err := tpmkey.OpenTPM(c.tpm)
			if err != nil {
				return nil, err
			}
			return tpmkey.Open(pem, tpm, nil)
		}
	}
	if c.x509 && !c.ktls && c.updateEvery > 0 {
		fmt.Fprintln(c.stderr, "--key-update-bytes with certificates needs --ktls (crypto/tls does not expose KeyUpdate)")
		return "", 2
	}
	return c.fs.Arg(0), 0
}

func (c *tlsCommand) fail(err error) int {
	fmt.Fprintf(c.stderr, "tlshd-go %s: %v\n", c.name, err)
	return 1
}

// pskConfig is the engine's settings with the PSK resolved.
func (c *tlsCommand) pskConfig() (*tls13.Config, *tls13.PSK, error) {
	cfg, err := c.tf.config()
	if err != nil {
		return nil, nil, err
	}
	psk, err := c.tf.resolvePSK()
	return cfg, psk, err
}

// describeX509 prints what an x509 handshake handed to kTLS negotiated.
func describeX509(w io.Writer, what string, s *tls13.Session) {
	peer := "none"
	if len(s.PeerCertificates) > 0 {
		if c, err := x509.ParseCertificate(s.PeerCertificates[0]); err == nil {
			peer = c.Subject.String()
		}
	}
	fmt.Fprintf(w, "%s: TLS 1.3 %v, group %v, peer certificate %q, kernel TLS\n", what, s.Suite, s.Group, peer)
}

// describeTLS prints what an x509 handshake negotiated.
func describeTLS(w io.Writer, what string, cs tls.ConnectionState) {
	peer := "none"
	if len(cs.PeerCertificates) > 0 {
		peer = cs.PeerCertificates[0].Subject.String()
	}
	fmt.Fprintf(w, "%s: TLS 1.3 %s, group %v, peer certificate %q\n",
		what, tls.CipherSuiteName(cs.CipherSuite), cs.CurveID, peer)
}
