package main

import (
	"crypto"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
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
	fs.StringVar(&f.psk, "psk", "", "PSK: hex, an NVMe interchange string NVMeTLSkey-1:xx:...:, or key:SERIAL for a keyring key")
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

// resolvePSK turns --psk, --psk-identity and --hash into a PSK.
func (f *tlsFlags) resolvePSK() (*tls13.PSK, error) {
	if f.psk == "" {
		return nil, errors.New("--psk is required")
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
	return psk, nil
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
