package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/ktls"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
	"github.com/tlshd-go/tlshd-go/keyring"
)

// A capability is one line of `tlshd-go probe`.
type capability struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Detail   string `json:"detail"`
	Required bool   `json:"required"` // the daemon cannot serve without it
}

// prober is what probe asks the system; tests replace it.
type prober struct {
	dial      func() (*genl.Conn, error)
	cipher    func(suite uint16) error
	rekey     func(suite uint16) error
	maxPay    func() error
	mptcp     func() error
	mptcpULP  func() error
	keyring   func(name string) (keyring.Serial, error)
	kernelRel func() string
}

func systemProber() prober {
	return prober{
		dial: genl.Dial, cipher: ktls.ProbeCipher, rekey: ktls.ProbeRekey, maxPay: ktls.ProbeTxMaxPayload,
		mptcp: ktls.ProbeMPTCP, mptcpULP: ktls.ProbeMPTCPULP, keyring: keyring.FindKeyring,
		kernelRel: func() string {
			var u unix.Utsname
			if unix.Uname(&u) != nil {
				return ""
			}
			return unix.ByteSliceToString(u.Release[:])
		},
	}
}

// runProbe is `tlshd-go probe`: it reports every capability this kernel
// offers the daemon, missing ones included, and exits 0 only if it has
// the handshake upcall.
func runProbe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("probe", "", "report what this kernel offers the daemon; exit 0 if it has the handshake upcall", stdout)
	asJSON := fs.Bool("json", false, "print the capabilities as JSON")
	if code := parseFlags(fs, args, 0, stderr); code >= 0 {
		return code
	}
	caps := systemProber().probe()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(caps)
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CAPABILITY\tSTATE\tDETAIL")
		for _, c := range caps {
			state := "yes"
			if !c.OK {
				state = "NO"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, state, c.Detail)
		}
		tw.Flush()
	}
	for _, c := range caps {
		if c.Required && !c.OK {
			return 1
		}
	}
	return 0
}

func (p prober) probe() []capability {
	var caps []capability
	add := func(name string, required bool, err error, okDetail string, hint func(error) string) {
		c := capability{Name: name, OK: err == nil, Required: required, Detail: okDetail}
		if err != nil {
			c.Detail = err.Error()
			if hint != nil {
				if h := hint(err); h != "" {
					c.Detail += " (" + h + ")"
				}
			}
		}
		caps = append(caps, c)
	}

	// The upcall.
	conn, err := p.dial()
	detail := ""
	keyringAttr := errors.New("unknown: no handshake family")
	keyUpdates := errors.New("unknown: no handshake family")
	if err == nil {
		gc := conn.Capabilities()
		keyUpdates = nil
		if !gc.SessionID {
			keyUpdates = errors.New(keyUpdateRow(gc))
		}
		detail = fmt.Sprintf("family id %d, version %d", gc.FamilyID, gc.Version)
		if gc.Probed {
			detail += fmt.Sprintf("; DONE attributes %v", gc.DoneAttrs)
		} else {
			detail += fmt.Sprintf("; GETPOLICY failed (%v)", gc.ProbeErr)
		}
		conn.Close()
		keyringAttr = p.keyringAttr()
	}
	add("handshake upcall", true, err, detail, nil) // genl's errors say what is missing
	add("KeyUpdate upcalls (proposal v7)", false, keyUpdates, "DONE attribute 4 is SESSION_ID (u32): sessions are kept for them", nil)
	add("ACCEPT KEYRING attribute", false, keyringAttr, "kernel 6.17 or later (from the release: replies carry it only when the consumer sets one)", nil)

	// kTLS, one line per suite.
	noKTLS := func(err error) string {
		if errors.Is(err, ktls.ErrNoKTLS) {
			return "modprobe tls"
		}
		return ""
	}
	for _, s := range ktls.Suites() {
		add("kTLS "+tls13.CipherSuite(s).String(), false, p.cipher(s), "TX and RX", noKTLS)
	}
	add("kTLS rekey (TLS 1.3 KeyUpdate)", false, p.rekey(0x1301), "a second TLS_TX is accepted", func(err error) string {
		if errors.Is(err, unix.EBUSY) {
			return "Linux 6.14 or later; the daemon refuses to let the kernel need it"
		}
		return noKTLS(err)
	})
	add("kTLS TX max payload", false, p.maxPay(), "TLS_TX_MAX_PAYLOAD_LEN: records honour the peer's record_size_limit", func(err error) string {
		if errors.Is(err, unix.ENOPROTOOPT) {
			return "kernel predates TLS_TX_MAX_PAYLOAD_LEN; records up to 16 KiB"
		}
		return noKTLS(err)
	})
	add("MPTCP sockets", false, p.mptcp(), "IPPROTO_MPTCP", func(err error) string {
		return "CONFIG_MPTCP and sysctl net.mptcp.enabled=1"
	})
	add("kTLS on MPTCP", false, p.mptcpULP(), "TCP_ULP tls on a connected MPTCP socket", func(err error) string {
		if errors.Is(err, ktls.ErrULPUnsupported) {
			return "no released kernel has it; MPTCP connections fall back to TCP for TLS"
		}
		return noKTLS(err)
	})
	for _, name := range []string{".nvme", ".nfs", ".nfsd"} {
		serial, err := p.keyring(name)
		add("keyring "+name, false, err, fmt.Sprintf("serial %d", serial), func(error) string {
			switch name {
			case ".nvme":
				return "modprobe nvme-keyring"
			case ".nfs":
				return "created by the nfs module (modprobe nfs)"
			}
			return "created by nfsd (modprobe nfsd)"
		})
	}
	return caps
}

// keyringAttr infers the ACCEPT KEYRING attribute from the release: the
// policy GETPOLICY returns covers the request, not the reply that carries
// it, so there is nothing better to ask the kernel.
func (p prober) keyringAttr() error {
	rel := p.kernelRel()
	major, rest, _ := strings.Cut(rel, ".")
	minorStr, _, _ := strings.Cut(rest, ".")
	minorStr = strings.TrimRightFunc(minorStr, func(r rune) bool { return r < '0' || r > '9' })
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minorStr)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot tell from release %q", rel)
	}
	if ma > 6 || ma == 6 && mi >= 17 {
		return nil
	}
	return fmt.Errorf("kernel %s predates 6.17: the daemon links the consumer's keyring from its process keyring", rel)
}
