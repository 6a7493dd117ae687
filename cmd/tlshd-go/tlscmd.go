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
	fs     *cmdFlags
	stdin  io.Reader // what is left of it after --psk-file -
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

func newTLSCommand(name, operand, summary string, stdin io.Reader, stdout, stderr io.Writer) *tlsCommand {
	c := &tlsCommand{name: name, fs: newFlagSet(name, operand, summary, stdout), stdin: stdin, stderr: stderr}
	c.tf.register(c.fs.FlagSet)
	c.fs.BoolVar(&c.x509, "x509", false, "certificate mode (implied by --cert or --ca); the PSK flags do not apply")
	c.fs.StringVar(&c.cert.CertFile, "cert", "", "x509: our certificate chain (PEM, leaf first)")
	c.fs.StringVar(&c.cert.KeyFile, "key", "", "x509: our private key (PEM, or a TPM key in TSS2 PEM form); default: in --cert")
	c.fs.StringVar(&c.cert.CAFile, "ca", "", "x509: trust anchors (PEM file or directory); default: the system store")
	c.fs.Var((*stringsFlag)(&c.cert.CRLFiles), "crl", "x509: a CRL file (PEM or DER); repeatable")
	c.fs.Var((*stringsFlag)(&c.cert.AllowedNames), "allowed-name", "x509: accept only peers with this name (DNS, IP/CIDR, URI, email); repeatable")
	c.fs.StringVar(&c.tpm, "tpm", "/dev/tpmrm0", "x509: the TPM for TSS2 private keys (device or unix socket)")
	c.fs.BoolVar(&c.ktls, "ktls", false, "after the handshake, hand the connection to kernel TLS as the daemon does (needs the tls module)")
	c.fs.IntVar(&c.updateEvery, "key-update-bytes", 0, "send a TLS KeyUpdate after every N bytes written (with --ktls: through the kernel, Linux 6.14+)")
	return c
}

// Flags of one authentication mode, refused with the other's.
var (
	pskOnlyFlags  = []string{"psk", "psk-file", "psk-identity", "hash", "no-dhe"}
	x509OnlyFlags = []string{"x509", "cert", "key", "ca", "crl", "allowed-name", "require-client-cert"}
)

// parse returns the operand, or an exit status: 0 after -h, 2 for a usage
// error (one line and a hint).
func (c *tlsCommand) parse(args []string) (string, int) {
	if code := parseFlags(c.fs, args, 1, c.stderr); code >= 0 {
		return "", code
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var pskSet, x509Set string
	for _, n := range pskOnlyFlags {
		if set[n] && pskSet == "" {
			pskSet = n
		}
	}
	for _, n := range x509OnlyFlags {
		if set[n] && x509Set == "" {
			x509Set = n
		}
	}
	if pskSet != "" && x509Set != "" {
		return "", usageError(c.stderr, c.name, fmt.Sprintf("--%s (PSK) and --%s (certificates) do not go together: choose one authentication mode", pskSet, x509Set))
	}
	if set["psk"] && set["psk-file"] {
		return "", usageError(c.stderr, c.name, "--psk and --psk-file do not go together")
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
		return "", usageError(c.stderr, c.name, "--key-update-bytes with certificates needs --ktls (crypto/tls does not expose KeyUpdate)")
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
	rest, err := c.tf.loadPSK(c.stdin, c.stderr)
	if err != nil {
		return nil, nil, err
	}
	c.stdin = rest
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
