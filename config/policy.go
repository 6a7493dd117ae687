package config

import (
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/tlshd-go/tlshd-go/handshake/certs"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/tls13"
)

// DefaultPath is where the daemon looks for its policy.
const DefaultPath = "/etc/tlshd-go/config.toml"

// Defaults for [global].
const (
	DefaultMaxConcurrent    = 64
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultFirstFlightTimeout: a peer has this long for its first
	// flight, well inside the consumers' 10 s (nvme, SunRPC) and 5 s
	// (NFSD) handshake timers.
	DefaultFirstFlightTimeout = 3 * time.Second
	// DefaultDrainTimeout: on SIGTERM, handshakes in flight get this long
	// to finish; systemd waits 90 s (TimeoutStopSec) before SIGKILL.
	DefaultDrainTimeout = 5 * time.Second
	DefaultTPMDevice    = "/dev/tpmrm0"
)

// Limits on values.
const (
	MaxConcurrentLimit = 4096
	MaxTimeout         = 10 * time.Minute
)

// A Role is the side of the handshake a request asks for, and the table
// ([client], [server]) whose settings apply. The handshake package derives
// it from the request's message type (ClientHello → Client, ServerHello →
// Server; the proposed KeyUpdate types map onto the same two roles).
type Role uint8

const (
	Client Role = 1
	Server Role = 2
)

func (r Role) String() string {
	switch r {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// An AuthMode is how the kernel asks a handshake to authenticate: the
// genetlink package's type itself, so a request's mode is checked against
// the policy without a conversion.
type AuthMode = genl.AuthMode

const (
	AuthUnauth = genl.Unauth // client: verify the server, send no certificate
	AuthPSK    = genl.PSK    // pre-shared key
	AuthX509   = genl.X509   // certificates
)

// AuthModes is a set of AuthMode values.
type AuthModes uint8

// AllAuthModes allows every mode ("any").
const AllAuthModes = AuthModes(1<<AuthUnauth | 1<<AuthPSK | 1<<AuthX509)

// Allows reports whether m is in the set.
func (s AuthModes) Allows(m AuthMode) bool {
	return m >= AuthUnauth && m <= AuthX509 && s&(1<<m) != 0
}

// List returns the modes in the set in ascending order.
func (s AuthModes) List() []AuthMode {
	var l []AuthMode
	for m := AuthUnauth; m <= AuthX509; m++ {
		if s.Allows(m) {
			l = append(l, m)
		}
	}
	return l
}

// ClientCertMode is whether a server asks for a client certificate.
type ClientCertMode uint8

const (
	// ClientCertOptional requests a certificate and verifies it if sent
	// (tlshd's behaviour).
	ClientCertOptional ClientCertMode = iota
	// ClientCertNone requests no certificate.
	ClientCertNone
	// ClientCertRequired fails the handshake without a valid certificate.
	ClientCertRequired
)

func (c ClientCertMode) String() string {
	switch c {
	case ClientCertNone:
		return "none"
	case ClientCertOptional:
		return "optional"
	case ClientCertRequired:
		return "required"
	}
	return "ClientCertMode(" + strconv.Itoa(int(c)) + ")"
}

// A Keyring names a keyring to link for every request: by description
// (Name) or by serial (Serial, when Name is empty).
type Keyring struct {
	Name   string
	Serial int32
}

func (k Keyring) String() string {
	if k.Name != "" {
		return k.Name
	}
	return strconv.FormatInt(int64(k.Serial), 10)
}

// Global is the [global] table.
type Global struct {
	LogLevel      slog.Level
	MaxConcurrent int
	Keyrings      []Keyring
	// HandshakeTimeout bounds a handshake whose request carries no
	// TIMEOUT attribute (NFS sends none). It does not shorten a timeout
	// the kernel sends; Settings.Timeout does.
	HandshakeTimeout time.Duration
	TPMDevice        string
	// FirstFlightTimeout bounds the wait for the peer's first message
	// (a server's ClientHello, a client's ServerHello), counted from the
	// start of the handshake; it never lengthens the handshake's own
	// deadline. A silent peer costs a handshake this long at most.
	FirstFlightTimeout time.Duration
	// DrainTimeout is how long handshakes in flight may run on after
	// SIGTERM before they are ended with ETIMEDOUT.
	DrainTimeout time.Duration
	// KeyLog ([debug] keylog) is a file to append every handshake's
	// traffic secrets to, in NSS key log format; "" means none. The
	// daemon opens it at start (SSLKEYLOGFILE takes precedence).
	KeyLog string
}

// Settings are what one handshake runs with: a role's defaults, or the
// defaults overlaid with the first matching [[peer]]. Values returned by
// Resolve are shared and must not be modified.
type Settings struct {
	// Rule is the name of the matching [[peer]], or "" for the role's
	// defaults.
	Rule string
	Role Role
	// Reject refuses the request without a handshake.
	Reject bool
	// Auth is the set of kernel auth modes allowed; a request in another
	// mode is refused.
	Auth AuthModes
	// CipherSuites and Groups are in preference order.
	CipherSuites []tls13.CipherSuite
	Groups       []tls13.Group
	// PSKModes: for a client the modes it offers, for a server the modes
	// it accepts, in preference order.
	PSKModes []tls13.PSKMode
	// Timeout caps the handshake's duration; 0 means no cap beyond the
	// kernel's TIMEOUT (or Global.HandshakeTimeout). See Deadline.
	Timeout time.Duration
	// RecordSizeLimit (PSK handshakes), if not 0, is the record_size_limit
	// (RFC 8449) this side advertises: 64 to 16385. kTLS receives records
	// of any size up to 2^14, so every such limit is one it keeps.
	RecordSizeLimit int
	X509            X509

	fallback time.Duration   // Global.HandshakeTimeout
	creds    *certs.Compiled // X509's files, loaded; nil from Parse
}

// X509 are the certificate settings. Relative paths in the policy file
// are resolved against the file's directory (made absolute by Load).
type X509 struct {
	// TrustAnchors are PEM files of CA certificates; none means the
	// system trust store.
	TrustAnchors []string
	// Certificate is a PEM chain, leaf first; "" means none.
	Certificate string
	// PrivateKey is a PEM private key, or a TPM key in "TSS2 PRIVATE KEY"
	// PEM form; "" means none.
	PrivateKey string
	// CRLs are PEM or DER certificate revocation lists.
	CRLs []string
	// ClientCertificate (servers only): whether to ask for one.
	ClientCertificate ClientCertMode
	// AllowedNames restricts the peer certificate's subject alternative
	// names; empty allows any name that verifies.
	AllowedNames AllowedNames
	// RequireEKU demands the serverAuth (peer is a server) or clientAuth
	// (peer is a client) extended key usage.
	RequireEKU bool
	// VerifyPeerName (clients only) checks the server certificate
	// against the request's PEERNAME.
	VerifyPeerName bool
	// ReverseDNS (clients only): a server given by address only (no
	// PEERNAME) is named by a reverse DNS lookup, sent as SNI, and its
	// certificate may match that name or the address.
	ReverseDNS bool
}

// Deadline returns how long a handshake may take, given the TIMEOUT the
// kernel sent (0 if none): the kernel's value, or Global.HandshakeTimeout
// without one, capped by Timeout when that is set.
func (s *Settings) Deadline(kernel time.Duration) time.Duration {
	d := kernel
	if d <= 0 {
		d = s.fallback
	}
	if d <= 0 {
		d = DefaultHandshakeTimeout
	}
	if s.Timeout > 0 && s.Timeout < d {
		d = s.Timeout
	}
	return d
}

// A Match describes a request, for Resolve. Fields the caller does not
// know stay empty; a rule that tests an empty field does not match.
type Match struct {
	Role     Role
	PeerName string     // the kernel's PEERNAME
	Addr     netip.Addr // the peer's address (getpeername on the socket)
	// PSKIdentity is the identity in use: for a server the one the
	// client offered, known only after the ClientHello.
	PSKIdentity string
	// HostNQN and SubsysNQN come from an NVMe PSK identity.
	HostNQN, SubsysNQN string
}

// A Policy is a loaded policy file. It is immutable and safe for
// concurrent use.
type Policy struct {
	file     string
	global   Global
	client   *Settings
	server   *Settings
	peers    []*peer
	needsID  bool
	specs    [2]*settingsSpec // [client], [server] as written
	rejected *Settings        // for requests with an invalid role

	lines          map[string]int // key path → line, when loaded from a file
	converted      bool           // from tlshd's format
	importWarnings []string
}

// A peer is one compiled [[peer]] rule.
type peer struct {
	name   string
	match  matcher
	spec   *settingsSpec
	client *Settings // nil when the rule is for servers only
	server *Settings // nil when the rule is for clients only
}

// File returns the name the policy was loaded from ("" for Default).
func (p *Policy) File() string { return p.file }

// Global returns the [global] settings. The slices are shared and must not
// be modified.
func (p *Policy) Global() Global { return p.global }

// Defaults returns the settings of a role when no rule matches.
func (p *Policy) Defaults(r Role) *Settings {
	switch r {
	case Client:
		return p.client
	case Server:
		return p.server
	}
	return p.rejected
}

// Rules returns the names of the [[peer]] rules in order.
func (p *Policy) Rules() []string {
	names := make([]string, len(p.peers))
	for i, r := range p.peers {
		names[i] = r.name
	}
	return names
}

// NeedsPSKIdentity reports whether any rule tests psk_identity, host_nqn
// or subsys_nqn; if none does, a server need not resolve again after the
// ClientHello.
func (p *Policy) NeedsPSKIdentity() bool { return p.needsID }

// Resolve returns the settings for a request: those of the first
// [[peer]] whose match fields all match m, else the role's defaults. It
// never returns nil; for a Role other than Client or Server it returns
// settings with Reject set. The result is shared and must not be
// modified. Resolve does not allocate.
func (p *Policy) Resolve(m Match) *Settings {
	if m.Role != Client && m.Role != Server {
		return p.rejected
	}
	for _, r := range p.peers {
		if !r.match.matches(&m) {
			continue
		}
		if m.Role == Client {
			return r.client
		}
		return r.server
	}
	return p.Defaults(m.Role)
}

// roleDefaults returns the built-in settings of a role.
func roleDefaults(r Role, fallback time.Duration) *Settings {
	s := &Settings{
		Role:         r,
		Auth:         AllAuthModes,
		CipherSuites: slices.Clone(tls13.DefaultCipherSuites),
		Groups:       slices.Clone(tls13.DefaultGroups),
		X509: X509{
			ClientCertificate: ClientCertOptional,
			VerifyPeerName:    true,
			ReverseDNS:        true,
		},
		fallback: fallback,
	}
	if r == Client {
		s.PSKModes = []tls13.PSKMode{tls13.PSKModeDHE}
	} else {
		s.PSKModes = []tls13.PSKMode{tls13.PSKModeDHE, tls13.PSKModeKE}
	}
	return s
}

func defaultGlobal() Global {
	return Global{
		LogLevel:         slog.LevelInfo,
		MaxConcurrent:    DefaultMaxConcurrent,
		Keyrings:         []Keyring{{Name: ".nvme"}, {Name: ".nfs"}, {Name: ".nfsd"}},
		HandshakeTimeout: DefaultHandshakeTimeout,
		TPMDevice:        DefaultTPMDevice,

		FirstFlightTimeout: DefaultFirstFlightTimeout,
		DrainTimeout:       DefaultDrainTimeout,
	}
}

// Default returns the policy used without a configuration file: the
// built-in defaults and no [[peer]] rules.
func Default() *Policy {
	p := build("", defaultGlobal(), &settingsSpec{}, &settingsSpec{}, nil)
	if err := (Options{}).loadFiles(p); err != nil {
		panic("config: the defaults name no files, yet loading them failed: " + err.Error())
	}
	return p
}

// build assembles a Policy from decoded parts.
func build(file string, g Global, client, server *settingsSpec, peers []*peer) *Policy {
	p := &Policy{
		file:   file,
		global: g,
		specs:  [2]*settingsSpec{client, server},
		peers:  peers,
	}
	p.client = roleDefaults(Client, g.HandshakeTimeout)
	client.apply(p.client)
	p.server = roleDefaults(Server, g.HandshakeTimeout)
	server.apply(p.server)
	p.rejected = &Settings{Reject: true, fallback: g.HandshakeTimeout}
	for _, r := range peers {
		if r.match.role != Server {
			s := *p.client
			s.Rule = r.name
			r.spec.apply(&s)
			r.client = &s
		}
		if r.match.role != Client {
			s := *p.server
			s.Rule = r.name
			r.spec.apply(&s)
			r.server = &s
		}
		if r.match.usesIdentity() {
			p.needsID = true
		}
	}
	return p
}

// settingsSpec is a settings table as written: nil fields are unset and
// inherit.
type settingsSpec struct {
	reject       *bool
	auth         *AuthModes
	cipherSuites []tls13.CipherSuite // nil: unset
	groups       []tls13.Group
	pskModes     []tls13.PSKMode
	timeout      *time.Duration
	recordSize   *int
	x509         x509Spec
}

type x509Spec struct {
	trustAnchors      *[]string
	certificate       *string
	privateKey        *string
	crls              *[]string
	clientCertificate *ClientCertMode
	allowedNames      *AllowedNames
	requireEKU        *bool
	verifyPeerName    *bool
	reverseDNS        *bool
}

// apply overlays the set fields of sp onto s. Slices are shared, never
// written.
func (sp *settingsSpec) apply(s *Settings) {
	if sp.reject != nil {
		s.Reject = *sp.reject
	}
	if sp.auth != nil {
		s.Auth = *sp.auth
	}
	if sp.cipherSuites != nil {
		s.CipherSuites = sp.cipherSuites
	}
	if sp.groups != nil {
		s.Groups = sp.groups
	}
	if sp.pskModes != nil {
		s.PSKModes = sp.pskModes
	}
	if sp.timeout != nil {
		s.Timeout = *sp.timeout
	}
	if sp.recordSize != nil {
		s.RecordSizeLimit = *sp.recordSize
	}
	x := &sp.x509
	if x.trustAnchors != nil {
		s.X509.TrustAnchors = *x.trustAnchors
	}
	if x.certificate != nil {
		s.X509.Certificate = *x.certificate
	}
	if x.privateKey != nil {
		s.X509.PrivateKey = *x.privateKey
	}
	if x.crls != nil {
		s.X509.CRLs = *x.crls
	}
	if x.clientCertificate != nil {
		s.X509.ClientCertificate = *x.clientCertificate
	}
	if x.allowedNames != nil {
		s.X509.AllowedNames = *x.allowedNames
	}
	if x.requireEKU != nil {
		s.X509.RequireEKU = *x.requireEKU
	}
	if x.verifyPeerName != nil {
		s.X509.VerifyPeerName = *x.verifyPeerName
	}
	if x.reverseDNS != nil {
		s.X509.ReverseDNS = *x.reverseDNS
	}
}
