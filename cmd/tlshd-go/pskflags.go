package main

import (
	"bufio"
	"crypto"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/keyring"
	"github.com/tlshd-go/tlshd-go/keyring/nvme"
)

// tlsFlags are the TLS settings connect and serve share.
type tlsFlags struct {
	identity  string
	psk       string
	pskFile   string
	hash      string
	groups    string
	suites    string
	noDHE     bool
	keyShares int
	rsl       int
	timeout   durationFlag
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.identity, "psk-identity", "", "PSK `identity` (for NVMe: \"NVMe0R01 <hostnqn> <subnqn>\")")
	fs.StringVar(&f.psk, "psk", "", "PSK: hex, an NVMe interchange string NVMeTLSkey-1:xx:...:, or key:SERIAL for a keyring key (a key on the command line shows in ps: prefer --psk-file)")
	fs.StringVar(&f.pskFile, "psk-file", "", "read the PSK (any --psk form) from the first line of `file`, mode 0600 or stricter; \"-\" for stdin")
	fs.StringVar(&f.hash, "hash", "", "PSK hash: sha256 or sha384 (default: from the interchange string or NVMe identity, else sha256)")
	fs.StringVar(&f.groups, "groups", "", "comma-separated key exchange `groups` in preference order (x25519, secp256r1, secp384r1, ffdhe2048, ffdhe3072, X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024)")
	fs.StringVar(&f.suites, "suites", "", "comma-separated cipher `suites` in preference order")
	fs.BoolVar(&f.noDHE, "no-dhe", false, "psk_ke only: no (EC)DHE (client: offer only psk_ke; server: accept only psk_ke)")
	fs.IntVar(&f.keyShares, "key-shares", 1, "client: send key shares for this many of the first groups")
	fs.IntVar(&f.rsl, "record-size-limit", 0, "advertise this record_size_limit (RFC 8449), 0 for none")
	f.timeout.d = defaultHandshakeTimeout
	fs.Var(&f.timeout, "timeout", "handshake timeout")
}

// config builds the engine settings other than the PSKs.
func (f *tlsFlags) config() (*tls13.Config, error) {
	cfg := &tls13.Config{KeyShares: f.keyShares, RecordSizeLimit: f.rsl}
	for _, name := range splitList(f.suites) {
		s, err := tls13.ParseCipherSuite(name)
		if err != nil {
			return nil, err
		}
		cfg.CipherSuites = append(cfg.CipherSuites, s)
	}
	for _, name := range splitList(f.groups) {
		g, err := tls13.ParseGroup(name)
		if err != nil {
			return nil, err
		}
		cfg.Groups = append(cfg.Groups, g)
	}
	if f.noDHE {
		cfg.PSKModes = []tls13.PSKMode{tls13.PSKModeKE}
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ':' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// maxPSKFile bounds what --psk-file reads: the longest form, an NVMe
// interchange string for a 48-byte key, is under 100 bytes.
const maxPSKFile = 4096

// loadPSK fills f.psk from --psk-file (refusing a file others can read)
// or stdin, and warns about a key given on the command line. It returns
// what is left of stdin after the key's line.
func (f *tlsFlags) loadPSK(stdin io.Reader, stderr io.Writer) (io.Reader, error) {
	switch {
	case f.pskFile == "-":
		if stdin == nil {
			return nil, errors.New("--psk-file -: no standard input")
		}
		br := bufio.NewReader(io.LimitReader(stdin, maxPSKFile))
		line, err := br.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return nil, fmt.Errorf("--psk-file -: reading the key from stdin: %v", err)
		}
		f.psk = strings.TrimSpace(line)
		// The rest of stdin is the data to send.
		return io.MultiReader(br, stdin), nil
	case f.pskFile != "":
		key, err := readSecretFile(f.pskFile)
		if err != nil {
			return nil, err
		}
		f.psk = key
	case f.psk != "" && !strings.HasPrefix(f.psk, "key:"):
		fmt.Fprintln(stderr, "warning: --psk puts the key on the command line, where ps and shell history show it; use --psk-file FILE or --psk-file -")
	}
	return stdin, nil
}

// readSecretFile reads the first line of a key file that only its owner
// can read, as ssh does for private keys.
func readSecretFile(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--psk-file: %w", err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return "", fmt.Errorf("--psk-file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("--psk-file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("--psk-file %s: group or others can access it (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(file, maxPSKFile))
	if err != nil {
		return "", fmt.Errorf("--psk-file: %w", err)
	}
	defer clear(data)
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("--psk-file %s: empty", path)
	}
	return line, nil
}

// resolvePSK turns --psk (or what loadPSK read), --psk-identity and
// --hash into a PSK.
func (f *tlsFlags) resolvePSK() (*tls13.PSK, error) {
	if f.psk == "" {
		return nil, errors.New("a PSK is required: --psk-file FILE, --psk-file - (stdin) or --psk")
	}
	psk := &tls13.PSK{Identity: []byte(f.identity)}
	var hashFromKey crypto.Hash
	switch {
	case strings.HasPrefix(f.psk, "key:"):
		serial, err := strconv.ParseInt(strings.TrimPrefix(f.psk, "key:"), 0, 32)
		if err != nil {
			return nil, fmt.Errorf("--psk %s: bad key serial: %v", f.psk, err)
		}
		key, desc, err := readKey(keyring.Serial(serial))
		if err != nil {
			return nil, err
		}
		psk.Key, psk.Tag = key, keyring.Serial(serial)
		if f.identity == "" {
			psk.Identity = []byte(desc)
		}
	case strings.HasPrefix(f.psk, "NVMeTLSkey-1:"):
		ic, err := nvme.ParseInterchange(f.psk)
		if err != nil {
			return nil, err
		}
		id, err := nvme.ParseIdentity(f.identity)
		if err != nil {
			return nil, fmt.Errorf("an interchange key needs --psk-identity with an NVMe identity: %w", err)
		}
		retained := nvme.RetainedKey(ic, id.HostNQN)
		if id.Version == 1 && id.Digest == "" {
			id.Digest = nvme.Digest(id.Hash, retained, id.HostNQN, id.SubsysNQN)
		}
		psk.Key = nvme.TLSPSK(id, retained)
		clear(retained)
		hashFromKey = id.Hash
	default:
		key, err := hex.DecodeString(strings.TrimPrefix(f.psk, "0x"))
		if err != nil || len(key) == 0 {
			return nil, fmt.Errorf("--psk: not hex, an interchange string or key:SERIAL")
		}
		psk.Key = key
	}
	if len(psk.Identity) == 0 {
		return nil, errors.New("--psk-identity is required")
	}
	switch {
	case f.hash != "":
		h, err := parseHash(f.hash)
		if err != nil {
			return nil, err
		}
		psk.Hash = h
	case hashFromKey != 0:
		psk.Hash = hashFromKey
	default:
		psk.Hash = crypto.SHA256
		if id, err := nvme.ParseIdentity(string(psk.Identity)); err == nil {
			psk.Hash = id.Hash
		}
	}
	// A TLS 1.3 PSK may have any length, but NVMe/TCP's (and any key the
	// kernel's consumers use) are as long as the hash's output: another
	// length is a typo or the wrong key.
	if len(psk.Key) != psk.Hash.Size() {
		n := len(psk.Key)
		clear(psk.Key)
		hint := ""
		if n == 48 {
			hint = " (a 48-byte key wants --hash sha384)"
		} else if n == 32 {
			hint = " (a 32-byte key wants --hash sha256)"
		}
		return nil, fmt.Errorf("the PSK is %d bytes; a %s PSK is %d bytes%s", n, hashName(psk.Hash), psk.Hash.Size(), hint)
	}
	return psk, nil
}

func hashName(h crypto.Hash) string {
	if h == crypto.SHA384 {
		return "SHA-384"
	}
	return "SHA-256"
}

func parseHash(s string) (crypto.Hash, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "")) {
	case "sha256":
		return crypto.SHA256, nil
	case "sha384":
		return crypto.SHA384, nil
	}
	return 0, fmt.Errorf("--hash %q: want sha256 or sha384", s)
}

// readKey reads a keyring key and its description. Keys that nvme-cli
// inserts grant their owner only "view": reading needs possession, so
// the well-known keyrings are linked into this thread's keyring first.
func readKey(serial keyring.Serial) ([]byte, string, error) {
	runtime.LockOSThread() // the thread keyring dies with this thread
	d, err := keyring.Describe(serial)
	if err != nil {
		return nil, "", err
	}
	key, err := keyring.Read(serial)
	if err != nil {
		for _, name := range []string{".nvme", ".nfs", ".nfsd"} {
			if ring, ferr := keyring.FindKeyring(name); ferr == nil {
				keyring.Link(ring, keyring.Thread)
			}
		}
		key, err = keyring.Read(serial)
	}
	if err != nil {
		return nil, "", err
	}
	return key, d.Description, nil
}
